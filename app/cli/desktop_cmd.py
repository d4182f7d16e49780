"""``labdeck install-desktop``: put Labdeck in the desktop's menus and "Open with" lists.

Copies the .desktop entry, the AppStream metainfo, the MIME types and the hicolor icons
from ``resources/`` into the XDG data dir (``$XDG_DATA_HOME``, else ~/.local/share; with
``--system``, /usr/local/share), pointing the entry at the ``labdeck`` that runs this
command, then refreshes the desktop, MIME and icon caches whose tools are installed. This
is for pip/pipx installs; distribution packages install the same files themselves.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import app
from app.cli.common import UsageError, say, warn

SYSTEM_DATA_DIR = Path("/usr/local/share")
# Characters that need no quoting in an Exec= argument (desktop entry spec, "Exec key").
_PLAIN_ARG = re.compile(r"[A-Za-z0-9_@+=:,./-]+")


@dataclass
class InstallReport:
    """What was installed where, and which cache refreshes ran or failed."""

    data_dir: Path
    files: list[Path] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "install-desktop",
        help="add Labdeck to the desktop menus and 'Open with' (for pip/pipx installs)",
        description="Install Labdeck's .desktop entry, metainfo, MIME types and icons into "
        "the XDG data dir, so Labdeck appears in the application menu and scripts "
        "(.py .sh .yaml .toml) can be opened with it to queue them.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true",
                       help="for this user, under $XDG_DATA_HOME or ~/.local/share (default)")
    where.add_argument("--system", action="store_true",
                       help=f"for every user, under {SYSTEM_DATA_DIR} (needs root)")
    parser.add_argument("--uninstall", action="store_true",
                        help="remove what an earlier install-desktop put there")
    parser.set_defaults(run=run)


def user_data_dir() -> Path:
    value = os.environ.get("XDG_DATA_HOME", "")
    # The spec says a relative value is invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / ".local" / "share"


def launcher_argv() -> list[str]:
    """How the desktop should start this installation, by absolute path where known.

    A desktop session's PATH often lacks ~/.local/bin (pipx), so the entry names the file.
    """
    if getattr(sys, "frozen", False):
        return [sys.executable]
    found = shutil.which("labdeck")
    if found:
        return [str(Path(found).absolute())]
    # Running from source without the entry point installed: the interpreter and module.
    return [sys.executable, "-m", "app"]


def quote_exec_arg(arg: str) -> str:
    """One Exec= argument, quoted as the desktop entry spec asks (then escaped as a value)."""
    if _PLAIN_ARG.fullmatch(arg):
        return arg
    # A literal % would read as a field code (%F) unless doubled.
    inner = "".join("\\" + ch if ch in '"`$\\' else ch for ch in arg).replace("%", "%%")
    # The whole key value is a "string": a backslash itself is written as two.
    return '"' + inner.replace("\\", "\\\\") + '"'


def desktop_entry_text(template: str, argv: list[str]) -> str:
    """The shipped .desktop entry with Exec/TryExec pointing at ``argv``."""
    lines = []
    for line in template.splitlines():
        if line.startswith("Exec="):
            # The shipped entry says "labdeck open %F": only the program word changes.
            rest = line.removeprefix("Exec=").split(" ")[1:]
            line = "Exec=" + " ".join([*(quote_exec_arg(word) for word in argv), *rest])
        elif line.startswith("TryExec="):
            line = "TryExec=" + argv[0].replace("\\", "\\\\")
        lines.append(line)
    return "\n".join(lines) + "\n"


def planned_files(resources: Path, data_dir: Path) -> list[tuple[Path, Path]]:
    """(source, destination) pairs; the .desktop entry is written separately."""
    linux = resources / "linux"
    metainfo = f"{app.APP_ID}.metainfo.xml"
    pairs = [
        (linux / metainfo, data_dir / "metainfo" / metainfo),
        (linux / f"{app.APP_ID}.mime.xml", data_dir / "mime" / "packages" / f"{app.APP_ID}.xml"),
    ]
    hicolor = resources / "icons" / "hicolor"
    for icon in sorted(hicolor.glob(f"*/apps/{app.APP_ID}.*")):
        pairs.append((icon, data_dir / "icons" / "hicolor" / icon.relative_to(hicolor)))
    return pairs


def install(resources: Path, data_dir: Path, argv: list[str]) -> InstallReport:
    report = InstallReport(data_dir=data_dir)
    template = resources / "linux" / f"{app.APP_ID}.desktop"
    pairs = planned_files(resources, data_dir)
    missing = [src for src in [template, *(s for s, _ in pairs)] if not src.is_file()]
    if missing or not any("icons" in d.parts for _, d in pairs):
        raise UsageError(
            f"this installation lacks its desktop files under {resources} "
            f"({', '.join(str(m) for m in missing) or 'no icons'}); reinstall Labdeck from "
            "a source checkout or a release bundle"
        )
    entry = data_dir / "applications" / f"{app.APP_ID}.desktop"
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(desktop_entry_text(template.read_text("utf-8"), argv), "utf-8")
    entry.chmod(0o644)
    report.files.append(entry)
    for src, dst in pairs:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        dst.chmod(0o644)
        report.files.append(dst)
    refresh_caches(data_dir, report)
    return report


def uninstall(resources: Path, data_dir: Path) -> InstallReport:
    report = InstallReport(data_dir=data_dir)
    targets = [data_dir / "applications" / f"{app.APP_ID}.desktop"]
    targets += [dst for _, dst in planned_files(resources, data_dir)]
    for path in targets:
        if path.is_file():
            path.unlink()
            report.files.append(path)
    refresh_caches(data_dir, report)
    return report


def refresh_caches(data_dir: Path, report: InstallReport) -> None:
    """Run each cache tool that exists; a missing tool is fine, a failing one is reported."""
    steps = [
        ("update-desktop-database", ["-q", str(data_dir / "applications")]),
        ("update-mime-database", [str(data_dir / "mime")]),
        # -t: do not insist on an index.theme in a user's private hicolor folder.
        ("gtk-update-icon-cache", ["-q", "-t", "-f", str(data_dir / "icons" / "hicolor")]),
    ]
    for tool, args in steps:
        exe = shutil.which(tool)
        if exe is None:
            continue
        try:
            done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            report.problems.append(f"{tool}: {exc}")
            continue
        if done.returncode == 0:
            report.refreshed.append(tool)
        else:
            detail = (done.stderr or done.stdout).strip().splitlines()
            report.problems.append(f"{tool} exited {done.returncode}: "
                                   f"{detail[-1] if detail else 'no message'}")


def run(args: argparse.Namespace) -> int:
    if not sys.platform.startswith("linux"):
        raise UsageError("install-desktop is for Linux desktops; on Windows and macOS use "
                         "the installer (see installer/README.md)")
    # The one resource locator; importing it loads QtGui's bindings but opens no display.
    from app.ui.common.resources import resource_path

    resources = resource_path("")
    data_dir = SYSTEM_DATA_DIR if args.system else user_data_dir()
    if args.uninstall:
        report = uninstall(resources, data_dir)
        say(f"removed {len(report.files)} files from {data_dir}")
    else:
        report = install(resources, data_dir, launcher_argv())
        say(f"installed {len(report.files)} files under {data_dir}")
        say(f"  {report.files[0]}")
    if report.refreshed:
        say(f"refreshed: {', '.join(report.refreshed)}")
    for problem in report.problems:
        warn(problem)
    return 1 if report.problems else 0
