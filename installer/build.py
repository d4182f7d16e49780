"""Builds the one-dir PyInstaller bundle of Labdeck and checks that it will start elsewhere.

    .venv/bin/python installer/build.py [--out build/pyinstaller]

Steps, each failing the build (exit 1) with a message that says what to do:
  1. PyInstaller with installer/labdeck.spec.
  2. Linux: every Qt plugin in the bundle (offscreen, xcb, wayland and theirs) is ``ldd``-ed
     with the bundle's library folders first. A library that is neither in the bundle nor on
     this machine fails the build: PyInstaller only warns (``Library not found:
     libxcb-icccm.so.4``) and the bundle then aborts at start on a clean machine. A library
     taken from this machine must be one every Linux desktop has (HOST_LIBS).
  3. The agent files and pynvml.py shipped to hosts are in the bundle, byte for byte.
  4. The frozen ``labdeck --self-test --screenshot`` runs offscreen and writes its PNG.
  5. The dist folder is packed as a .tar.gz.
The figures (build time, bundle and archive size, self-test time) are printed and written
to ``<out>/build-report.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "installer" / "labdeck.spec"
sys.path.insert(0, str(ROOT))

from app import __version__  # noqa: E402  (the repository root is on sys.path first)
from ssh_backend.agent_bundle import PYNVML, build_bundle  # noqa: E402

# Libraries a bundle takes from the machine it runs on, as PyInstaller intends: the C
# library, and the graphics/display client libraries that must match the system's driver
# and compositor. Every desktop Linux has them (Debian 12: libc6 libgl1 libegl1 libxcb1
# libwayland-client0 libwayland-cursor0 libwayland-egl1); anything else must be bundled.
HOST_LIBS = re.compile(
    r"^(ld-linux.*|linux-vdso\.so.*|lib(c|m|dl|rt|pthread|resolv|util)\.so\.\d+|"
    r"libGL\.so\.1|libEGL\.so\.1|libGLX\.so\.0|libGLdispatch\.so\.0|libOpenGL\.so\.0|"
    r"libxcb\.so\.1|libwayland-(client|cursor|egl)\.so\.\d+|libdrm\.so\.2|libgbm\.so\.1)$"
)
# Plugins Qt loads only where the system provides their toolkit; a failure to load them is
# a fallback, not a crash.
OPTIONAL_PLUGINS = {
    "platformthemes/libqgtk3.so": "the GTK theme, loaded only on GTK desktops (they have GTK)",
}
# Where Debian keeps each library that is typically missing on a bare machine.
DEBIAN_PACKAGES = {
    "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1",
    "libwayland-client.so.0": "libwayland-client0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
}


class BuildError(Exception):
    """A check failed; the message says what is wrong and what to do."""


def run_pyinstaller(out: Path) -> tuple[float, list[str]]:
    """Build into ``out/dist/labdeck``; returns seconds taken and PyInstaller's warnings."""
    log_path = out / "pyinstaller.log"
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        done = subprocess.run(
            [sys.executable, "-m", "PyInstaller", "--noconfirm",
             "--distpath", str(out / "dist"), "--workpath", str(out / "work"), str(SPEC)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False,
        )
    seconds = time.monotonic() - started
    text = log_path.read_text("utf-8", errors="replace")
    if done.returncode != 0:
        tail = "\n".join(text.splitlines()[-15:])
        raise BuildError(f"PyInstaller failed (exit {done.returncode}); {log_path}:\n{tail}")
    warnings = [line.split("WARNING: ", 1)[1] for line in text.splitlines()
                if "WARNING: Library not found" in line]
    return seconds, warnings


def bundle_lib_dirs(internal: Path) -> list[Path]:
    """Every folder of the bundle that holds shared libraries, top level first."""
    dirs = {internal}
    dirs.update(p.parent for p in internal.rglob("*.so*") if p.is_file())
    return sorted(dirs, key=lambda d: (len(d.parts), str(d)))


def ldd(path: Path, lib_path: str) -> dict[str, str | None]:
    """Library name → resolved path (None when not found), as the dynamic loader sees it."""
    env = {**os.environ, "LD_LIBRARY_PATH": lib_path}
    done = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env,
                          check=False)
    libs: dict[str, str | None] = {}
    for line in done.stdout.splitlines():
        line = line.strip()
        if "=>" in line:
            name, _, rest = line.partition("=>")
            target = rest.strip().split(" (")[0].strip()
            libs[name.strip()] = None if target == "not found" else target
    return libs


def check_qt_plugins(internal: Path) -> dict[str, list[str]]:
    """Fail when a Qt plugin's library is missing or comes from outside the allowed set.

    Returns the host libraries the bundle relies on, with the plugins that use them.
    """
    plugins_dir = next((p for p in internal.rglob("plugins") if (p / "platforms").is_dir()),
                       None)
    if plugins_dir is None:
        raise BuildError(f"no Qt plugins/platforms folder in {internal}")
    platforms = {p.name for p in (plugins_dir / "platforms").glob("*.so")}
    for needed in ("libqoffscreen.so", "libqxcb.so", "libqwayland.so"):
        if needed not in platforms:
            raise BuildError(f"the bundle lacks the Qt platform plugin {needed}")
    lib_path = os.pathsep.join(str(d) for d in bundle_lib_dirs(internal))
    missing: dict[str, set[str]] = {}
    foreign: dict[str, set[str]] = {}
    host: dict[str, set[str]] = {}
    for plugin in sorted(plugins_dir.rglob("*.so")):
        rel = plugin.relative_to(plugins_dir).as_posix()
        if rel in OPTIONAL_PLUGINS:
            continue
        for name, target in ldd(plugin, lib_path).items():
            if target is None:
                missing.setdefault(name, set()).add(rel)
            elif not Path(target).resolve().is_relative_to(internal.resolve()):
                (host if HOST_LIBS.match(name) else foreign).setdefault(name, set()).add(rel)
    problems = []
    if missing:
        packages = sorted({DEBIAN_PACKAGES.get(name, "?") for name in missing})
        problems.append(
            "Qt plugin libraries missing from the bundle and this machine (a clean machine "
            "would abort at start):\n" + _listing(missing)
            + f"\n  Install them before building (Debian: apt-get install {' '.join(packages)})"
            " and add them to installer/dev.sh."
        )
    if foreign:
        problems.append(
            "Qt plugin libraries taken from this machine that a clean one may lack (bundle "
            "them, or extend HOST_LIBS in installer/build.py if every desktop has them):\n"
            + _listing(foreign)
        )
    if problems:
        raise BuildError("\n".join(problems))
    return {name: sorted(users) for name, users in sorted(host.items())}


def _listing(libs: dict[str, set[str]]) -> str:
    return "\n".join(f"  {name}  (needed by {', '.join(sorted(users)[:3])}"
                     + (f" and {len(users) - 3} more" if len(users) > 3 else "") + ")"
                     for name, users in sorted(libs.items()))


def check_agent_files(internal: Path) -> str:
    """The bundle ships the same agent (and pynvml.py) as the source tree; its version."""
    frozen = build_bundle(internal / "ssh_backend" / "agent", with_pynvml=False)
    nvml = internal / PYNVML
    if not nvml.is_file():
        raise BuildError(f"{PYNVML} is not a plain file in the bundle ({nvml}); hosts would "
                         "lose the NVML backend")
    files = {**frozen.files, PYNVML: nvml.read_bytes()}
    source = build_bundle()
    if files != source.files:
        differ = sorted(set(files) ^ set(source.files)
                        | {n for n in files if source.files.get(n) != files[n]})
        raise BuildError(f"the bundle's agent files differ from the source: {differ}")
    return source.version


def run_self_test(exe: Path, out: Path) -> float:
    """The frozen self-test, offscreen, in a throwaway LABDECK_HOME; returns its seconds."""
    shot = out / "selftest.png"
    shot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="labdeck-selftest-") as home:
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "LABDECK_HOME": home}
        started = time.monotonic()
        done = subprocess.run([str(exe), "--self-test", "--screenshot", str(shot)],
                              capture_output=True, text=True, env=env, timeout=120,
                              check=False)
        seconds = time.monotonic() - started
    if done.returncode != 0:
        raise BuildError(f"the frozen self-test failed (exit {done.returncode}):\n"
                         f"{done.stdout}{done.stderr}")
    if not shot.is_file() or shot.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        raise BuildError(f"the frozen self-test wrote no PNG at {shot}")
    return seconds


def make_archive(bundle: Path, out: Path) -> Path:
    machine = platform.machine().lower() or "unknown"
    archive = out / f"labdeck-{__version__}-{sys.platform}-{machine}.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        tar.add(bundle, arcname=bundle.name)
    return archive


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def build(out: Path, skip_build: bool = False) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"version": __version__, "platform": sys.platform}
    warnings: list[str] = []
    if not skip_build:
        seconds, warnings = run_pyinstaller(out)
        report["build_s"] = round(seconds, 1)
        print(f"built in {seconds:.0f} s")
        for warning in warnings:
            print(f"  PyInstaller: {warning}")
    report["pyinstaller_library_warnings"] = warnings
    bundle = out / "dist" / "labdeck"
    exe = bundle / ("labdeck.exe" if sys.platform == "win32" else "labdeck")
    internal = bundle / "_internal"
    if not exe.is_file():
        raise BuildError(f"no executable at {exe}")
    if sys.platform.startswith("linux"):
        host = check_qt_plugins(internal)
        report["host_libraries"] = sorted(host)
        print(f"Qt plugins: every library is bundled or a host library ({', '.join(host)})")
    report["agent_version"] = check_agent_files(internal)
    print(f"agent files: bundled, version {report['agent_version']}")
    report["self_test_s"] = round(run_self_test(exe, out), 2)
    print(f"frozen self-test passed in {report['self_test_s']} s")
    archive = make_archive(bundle, out)
    report["bundle_bytes"] = dir_size(bundle)
    report["archive"] = str(archive)
    report["archive_bytes"] = archive.stat().st_size
    print(f"bundle {report['bundle_bytes'] / 2**20:.0f} MiB, archive {archive.name} "
          f"{report['archive_bytes'] / 2**20:.0f} MiB")
    (out / "build-report.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "pyinstaller",
                        help="work, dist and archive folder (default: build/pyinstaller)")
    parser.add_argument("--skip-build", action="store_true",
                        help="check, self-test and pack an existing build only")
    args = parser.parse_args(argv)
    try:
        build(args.out.resolve(), skip_build=args.skip_build)
    except BuildError as exc:
        print(f"build.py: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
