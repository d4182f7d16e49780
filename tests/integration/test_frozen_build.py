"""The PyInstaller build: installer/build.py builds and checks the bundle, then the frozen
binary itself passes ``--self-test`` offscreen and installs its desktop files."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import app

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def build_dir() -> Iterator[Path]:
    # Not tmp_path: pytest keeps those, and a build is half a gigabyte.
    with tempfile.TemporaryDirectory(prefix="labdeck-frozen-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def frozen(build_dir: Path) -> tuple[Path, dict[str, object]]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(REPO / "installer" / "build.py"),
                           "--out", str(build_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((build_dir / "build-report.json").read_text("utf-8"))
    print(f"\nfrozen build: {time.monotonic() - started:.0f} s in all; {json.dumps(report)}")
    return build_dir / "dist" / "labdeck" / "labdeck", report


def _env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
            "HOME": str(tmp_path / "home"), "LABDECK_HOME": str(tmp_path / "labdeck"),
            "QT_QPA_PLATFORM": "offscreen"}


@pytest.mark.timeout(900)
def test_build_report_has_the_figures(frozen: tuple[Path, dict[str, object]]) -> None:
    _, report = frozen
    assert report["version"] == app.__version__
    archive = Path(str(report["archive"]))
    assert archive.stat().st_size == report["archive_bytes"]
    # Sanity bounds: Qt and Python are in it, and no test tooling was dragged in.
    assert 30 * 2**20 < int(str(report["archive_bytes"])) < 200 * 2**20
    if sys.platform.startswith("linux"):
        assert "libxcb.so.1" in list(report["host_libraries"])  # type: ignore[arg-type]


@pytest.mark.timeout(900)
def test_frozen_binary_passes_its_self_test(frozen, tmp_path: Path) -> None:
    exe, _ = frozen
    shot = tmp_path / "frozen.png"
    started = time.monotonic()
    done = subprocess.run([str(exe), "--self-test", "--screenshot", str(shot)],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=120,
                          check=False)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert "self-test passed" in done.stdout
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 800)
    print(f"\nfrozen self-test: {seconds:.2f} s")

    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert version.stdout.strip() == f"labdeck {app.__version__}"


@pytest.mark.timeout(900)
def test_frozen_install_desktop_points_at_the_bundle(frozen, tmp_path: Path) -> None:
    exe, _ = frozen
    env = {**_env(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    done = subprocess.run([str(exe), "install-desktop"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    entry = tmp_path / "data" / "applications" / f"{app.APP_ID}.desktop"
    lines = entry.read_text("utf-8").splitlines()
    assert f"Exec={exe} open %F" in lines
    assert (tmp_path / "data" / "icons" / "hicolor" / "512x512" / "apps"
            / f"{app.APP_ID}.png").is_file()
    validate = shutil.which("desktop-file-validate")
    assert validate is not None, "installer/dev.sh installs desktop-file-utils"
    checked = subprocess.run([validate, str(entry)], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stdout
