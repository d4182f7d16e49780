"""The shipped agent bundle: which files, its content hash, the tamper check, and that
every shipped file is valid Python 3.8."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import sys
from pathlib import Path

from ssh_backend import agent_bundle
from ssh_backend.agent_bundle import (
    AgentBundle,
    build_bundle,
    bundle_version,
    remote_dir,
    verify_files,
)

AGENT_DIR = Path(agent_bundle.__file__).resolve().parent / "agent"
sys.path.insert(0, str(AGENT_DIR))
import agent as agent_script  # noqa: E402


def test_bundle_holds_the_agent_and_vendored_pynvml() -> None:
    bundle = agent_bundle.agent_bundle()
    assert agent_bundle.agent_bundle() is bundle, "read once"
    for name in ("agent.py", "wire.py", "procinfo.py", "gpu_nvml.py", "gpu_smi.py",
                 "gpu_sim.py", "sim_trace.json"):
        assert bundle.files[name] == (AGENT_DIR / name).read_bytes()
    assert "__init__.py" not in bundle.files
    assert not any("pycache" in name or name.endswith(".pyc") for name in bundle.files)
    spec = importlib.util.find_spec("pynvml")
    assert spec and spec.origin
    assert bundle.files["pynvml.py"] == Path(spec.origin).read_bytes()


def test_version_is_a_content_hash() -> None:
    bundle = agent_bundle.agent_bundle()
    assert len(bundle.version) == 16 and int(bundle.version, 16) >= 0
    assert bundle_version(dict(bundle.files)) == bundle.version
    changed = dict(bundle.files, **{"wire.py": bundle.files["wire.py"] + b"\n"})
    assert bundle_version(changed) != bundle.version
    renamed = {"a": b"bc"}
    assert bundle_version(renamed) != bundle_version({"ab": b"c"})


def test_agent_computes_the_same_hash_as_the_app() -> None:
    bundle = agent_bundle.agent_bundle()
    assert agent_script.bundle_version(dict(bundle.files)) == bundle.version
    for name in ("agent.py", "__init__.py", "test_x.py", "conftest.py", "sim_trace.json",
                 "notes.txt", "x.pyc"):
        assert agent_script.shipped(name) == agent_bundle.shipped(name), name


def test_bundle_without_pynvml(tmp_path: Path) -> None:
    for path in AGENT_DIR.iterdir():
        if path.is_file():
            shutil.copy(path, tmp_path / path.name)
    (tmp_path / "test_local.py").write_text("x = 1\n")
    bundle = build_bundle(tmp_path, with_pynvml=False)
    assert "pynvml.py" not in bundle.files and "test_local.py" not in bundle.files
    assert bundle.version != agent_bundle.agent_bundle().version


def test_remote_dir_is_relative_to_home() -> None:
    assert remote_dir("0123456789abcdef") == ".labdeck/agent/0123456789abcdef"


def test_verify_files_names_what_differs() -> None:
    bundle = AgentBundle(files={"agent.py": b"a", "wire.py": b"w", "x.json": b"{}"},
                         version="v")
    assert verify_files(dict(bundle.files), bundle) == []
    remote = {"agent.py": b"a", "wire.py": b"tampered", "extra.py": b""}
    assert verify_files(remote, bundle) == ["wire.py", "x.json"]


def test_every_shipped_file_is_python_38() -> None:
    for name, content in agent_bundle.agent_bundle().files.items():
        if name.endswith(".py"):
            ast.parse(content.decode("utf-8"), filename=name, feature_version=(3, 8))
