"""The files shipped to a host as the agent, and the content hash that names them.

The bundle is every shipped file of ``ssh_backend/agent/`` plus ``pynvml.py`` from the
installed nvidia-ml-py (hosts need nothing but python3). Its version is a hash of names and
contents, so a host keeps one folder per version and a changed file is never mistaken for
the right one.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

AGENT_DIR = Path(__file__).resolve().parent / "agent"
REMOTE_ROOT = ".labdeck/agent"
PYNVML = "pynvml.py"


@dataclass(frozen=True)
class AgentBundle:
    files: dict[str, bytes]
    version: str


def shipped(name: str) -> bool:
    """Whether a file of the agent folder ships (agent.py applies the same rule)."""
    if name == "sim_trace.json":
        return True
    return (
        name.endswith(".py")
        and not name.startswith("test_")
        and name not in ("conftest.py", "__init__.py")
    )


def bundle_version(files: dict[str, bytes]) -> str:
    """First 16 hex digits of sha256 over length-prefixed (name, content), sorted by name.

    Must stay identical to ``bundle_version`` in agent/agent.py, which computes its own
    version when none is passed.
    """
    digest = hashlib.sha256()
    for name in sorted(files):
        encoded = name.encode("utf-8")
        digest.update(struct.pack(">I", len(encoded)) + encoded)
        digest.update(struct.pack(">Q", len(files[name])) + files[name])
    return digest.hexdigest()[:16]


def _pynvml_source() -> bytes | None:
    try:
        spec = importlib.util.find_spec("pynvml")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        return Path(spec.origin).read_bytes()
    except OSError:
        return None


def build_bundle(agent_dir: Path = AGENT_DIR, with_pynvml: bool = True) -> AgentBundle:
    """Read the bundle from disk (uncached; ``agent_bundle`` is the cached entry point)."""
    files = {
        path.name: path.read_bytes()
        for path in sorted(agent_dir.iterdir())
        if path.is_file() and shipped(path.name)
    }
    if with_pynvml and PYNVML not in files:
        source = _pynvml_source()
        if source is not None:
            files[PYNVML] = source
    return AgentBundle(files=files, version=bundle_version(files))


@functools.cache
def agent_bundle() -> AgentBundle:
    """The agent bundle of this installation, read once."""
    return build_bundle()


def remote_dir(version: str) -> str:
    """Where a bundle version lives on a host, relative to $HOME."""
    return f"{REMOTE_ROOT}/{version}"


def verify_files(files: dict[str, bytes], bundle: AgentBundle) -> list[str]:
    """Names of bundle files that are missing from ``files`` or differ, sorted."""
    return sorted(name for name, content in bundle.files.items() if files.get(name) != content)
