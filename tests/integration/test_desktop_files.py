"""Linux desktop integration: the .desktop entry, metainfo, MIME types and icons validate,
and ``labdeck install-desktop`` puts them where the XDG specs say."""

from __future__ import annotations

import configparser
import os
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import app
from app.cli import desktop_cmd
from app.cli.common import UsageError
from tests.harness.labcli import LabCli

REPO = Path(__file__).resolve().parents[2]
LINUX = REPO / "resources" / "linux"
ICONS = REPO / "resources" / "icons"
DESKTOP = LINUX / f"{app.APP_ID}.desktop"
METAINFO = LINUX / f"{app.APP_ID}.metainfo.xml"
MIME = LINUX / f"{app.APP_ID}.mime.xml"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
MIME_TYPES = {"text/x-python": "*.py", "application/x-shellscript": "*.sh",
              "application/x-yaml": "*.yaml", "application/toml": "*.toml"}
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: installer/dev.sh installs it (apt-get install "
                    "desktop-file-utils)")
    return path


def _validate_desktop(path: Path) -> None:
    done = subprocess.run([_tool("desktop-file-validate"), str(path)], capture_output=True,
                          text=True, check=False)
    # It prints hints even for valid files; errors and warnings make it exit non-zero.
    assert done.returncode == 0, done.stdout + done.stderr
    assert "error" not in done.stdout and "warning" not in done.stdout, done.stdout


def _entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_desktop_entry_validates_and_opens_scripts() -> None:
    _validate_desktop(DESKTOP)
    entry = _entry(DESKTOP)
    assert entry["Icon"] == app.APP_ID
    # `labdeck open FILE…` is the app's contract for files from a file manager.
    assert entry["Exec"].split() == ["labdeck", "open", "%F"]
    assert set(MIME_TYPES) <= set(filter(None, entry["MimeType"].split(";")))
    assert entry["StartupWMClass"] == "Labdeck"


def test_metainfo_validates() -> None:
    root = ET.parse(METAINFO).getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == app.APP_ID
    for tag in ("name", "summary", "metadata_license", "project_license", "description"):
        assert root.find(tag) is not None, f"metainfo lacks <{tag}>"
    assert root.findtext("launchable") == DESKTOP.name
    assert {m.text for m in root.iterfind("provides/mediatype")} == set(MIME_TYPES)
    releases = [r.get("version") for r in root.iterfind("releases/release")]
    assert app.__version__ in releases, "add a <release> for the current version"
    appstreamcli = shutil.which("appstreamcli")
    if appstreamcli is not None:  # Debian: apt-get install appstream (installer/dev.sh)
        done = subprocess.run([appstreamcli, "validate", "--no-net", str(METAINFO)],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_mime_types_match_the_desktop_entry() -> None:
    root = ET.parse(MIME).getroot()
    globs = {t.get("type"): {g.get("pattern") for g in t.iter(f"{MIME_NS}glob")}
             for t in root.iter(f"{MIME_NS}mime-type")}
    for mime, pattern in MIME_TYPES.items():
        assert pattern in globs.get(mime, set()), f"{mime} lacks the glob {pattern}"
    declared = set(filter(None, _entry(DESKTOP)["MimeType"].split(";")))
    assert set(globs) <= declared


def test_icons_exist_in_every_hicolor_size() -> None:
    for size in SIZES:
        png = ICONS / "hicolor" / f"{size}x{size}" / "apps" / f"{app.APP_ID}.png"
        assert png.is_file(), f"missing {png} (run installer/render_icons.py)"
        assert _png_size(png) == (size, size), png
    scalable = ICONS / "hicolor" / "scalable" / "apps" / f"{app.APP_ID}.svg"
    assert scalable.read_bytes() == (ICONS / "labdeck.svg").read_bytes(), \
        "the scalable icon is stale: run installer/render_icons.py"


_COMPARE_ICONS = """
import sys
import numpy as np
from PySide6.QtGui import QGuiApplication, QImage
sys.path.insert(0, sys.argv[1])
import render_icons
app = QGuiApplication(sys.argv[:1])
fmt = QImage.Format.Format_RGBA8888
for size in (16, 48, 256):
    fresh = render_icons.render(render_icons.source_svg(size), size)
    stored = QImage(str(render_icons.png_path(size)))
    if stored.isNull():
        print(size, "missing")
        continue
    # Keep the converted images referenced while their bits are read (a temporary's
    # buffer is freed before bytes() copies it).
    fresh_rgba, stored_rgba = fresh.convertToFormat(fmt), stored.convertToFormat(fmt)
    a = np.frombuffer(bytes(fresh_rgba.constBits()), np.uint8)
    b = np.frombuffer(bytes(stored_rgba.constBits()), np.uint8)
    print(size, int(np.abs(a.astype(int) - b.astype(int)).max()))
"""


def test_png_icons_are_rendered_from_the_current_svgs() -> None:
    """A changed SVG without re-rendered PNGs fails here, not on a user's panel.

    Rendered in a fresh interpreter, as installer/render_icons.py does, so no state left
    by earlier Qt tests can change the rendering."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", _COMPARE_ICONS, str(REPO / "installer")],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    diffs = dict(line.split() for line in done.stdout.splitlines())
    assert set(diffs) == {"16", "48", "256"}, done.stdout
    for size, diff in diffs.items():
        assert diff != "missing" and int(diff) <= 2, \
            f"{size} px PNG differs from its SVG by {diff}: re-render the icons"


def test_exec_arguments_are_quoted_per_the_spec(tmp_path: Path) -> None:
    assert desktop_cmd.quote_exec_arg("/usr/bin/labdeck") == "/usr/bin/labdeck"
    odd = "/opt/my apps/100%/lab$deck"
    quoted = desktop_cmd.quote_exec_arg(odd)
    assert quoted == '"/opt/my apps/100%%/lab\\\\$deck"'
    text = desktop_cmd.desktop_entry_text(DESKTOP.read_text("utf-8"), [odd, "-m", "app"])
    entry = tmp_path / DESKTOP.name
    entry.write_text(text, "utf-8")
    _validate_desktop(entry)
    assert _entry(entry)["Exec"] == f"{quoted} -m app open %F"


def test_install_desktop_puts_files_in_the_xdg_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "xdg-data"
    labdeck = LabCli(tmp_path, user_home=tmp_path / "home", env={"XDG_DATA_HOME": str(data)})
    done = labdeck("install-desktop", "--user")
    assert done.returncode == 0, done.stdout + done.stderr
    entry = data / "applications" / f"{app.APP_ID}.desktop"
    _validate_desktop(entry)
    exec_words = _entry(entry)["Exec"].split()
    assert Path(exec_words[0]).is_absolute() and exec_words[-2:] == ["open", "%F"]
    assert (data / "metainfo" / METAINFO.name).read_bytes() == METAINFO.read_bytes()
    assert (data / "mime" / "packages" / f"{app.APP_ID}.xml").read_bytes() == MIME.read_bytes()
    for size in SIZES:
        icon = data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{app.APP_ID}.png"
        assert _png_size(icon) == (size, size)
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / f"{app.APP_ID}.svg").is_file()
    if shutil.which("update-mime-database"):
        # The MIME cache was rebuilt from our package file: *.toml maps to application/toml.
        assert "application/toml:*.toml" in (data / "mime" / "globs2").read_text("utf-8")
        assert "update-mime-database" in done.stdout
    if shutil.which("update-desktop-database"):
        cache = (data / "applications" / "mimeinfo.cache").read_text("utf-8")
        assert f"text/x-python={app.APP_ID}.desktop;" in cache

    done = labdeck("install-desktop", "--uninstall")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not entry.exists()
    assert not list((data / "icons").rglob(f"{app.APP_ID}.*"))


def test_install_desktop_without_resources_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="lacks its desktop files"):
        desktop_cmd.install(tmp_path / "resources", tmp_path / "data", ["/usr/bin/labdeck"])
    assert not (tmp_path / "data").exists()
