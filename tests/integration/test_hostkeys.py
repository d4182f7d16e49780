"""KnownHosts: line-by-line reading, hashed names, ports, changed keys, appending safely."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import paramiko
import pytest

from ssh_backend.hostkeys import KnownHosts, fingerprint, question
from tests.harness.sshd import generate_key, public_key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keys")
    return {
        "a": generate_key(root / "a"),
        "b": generate_key(root / "b"),
        "rsa": generate_key(root / "rsa", kind="rsa"),
    }


def pub(path: Path) -> paramiko.PKey:
    return public_key(path)


def line(names: str, key: paramiko.PKey) -> str:
    return f"{names} {key.get_name()} {key.get_base64()}"


def test_fingerprint_matches_ssh_keygen(keys: dict[str, Path]) -> None:
    for path in keys.values():
        out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"],
                             capture_output=True, text=True, check=True).stdout
        assert fingerprint(pub(path)) == out.split()[1]
    q = question("h", 22, pub(keys["a"]))
    assert q.key_type == "ssh-ed25519" and q.fingerprint.startswith("SHA256:")
    assert not q.fingerprint.endswith("=")


def test_cert_authority_line_does_not_hide_the_rest_of_the_file(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    a, b = pub(keys["a"]), pub(keys["b"])
    system = tmp_path / "ssh_known_hosts"
    system.write_text("\n".join([
        "# comment",
        f"@cert-authority *.lab {a.get_name()} {a.get_base64()}",
        line("gpu1,10.0.0.1", a),
        "gpu2 ssh-ed25519 !!!not-base64!!!",
        f"@revoked gpu9 {b.get_name()} {b.get_base64()}",
        "only-two fields",
        line("[gpu3]:2222", b),
        "",
    ]))
    known = KnownHosts(tmp_path / "app" / "known_hosts", [system, tmp_path / "missing"])
    assert known.check("gpu1", 22, a) == "known"
    assert known.check("10.0.0.1", 22, a) == "known"
    assert known.check("gpu3", 2222, b) == "known"
    assert known.check("gpu3", 22, b) == "unknown"  # the port is part of the name
    assert known.check("gpu1", 22, b) == "changed"
    assert known.check("nowhere", 22, a) == "unknown"
    skipped = "\n".join(known.skipped)
    assert f"{system}:2: @cert-authority" in skipped
    assert f"{system}:4: bad key data" in skipped
    assert f"{system}:6:" in skipped
    assert len(known.skipped) == 3
    # An @revoked line is read, not skipped: that key is refused for gpu9.
    assert known.check("gpu9", 22, b) == "revoked"


def test_hashed_names_patterns_and_negation(tmp_path: Path, keys: dict[str, Path]) -> None:
    a = pub(keys["a"])
    hashed = paramiko.HostKeys.hash_host("[secret.lab]:2200")
    system = tmp_path / "known_hosts"
    system.write_text("\n".join([line(hashed, a), line("*.farm,!bad.farm", a)]) + "\n")
    known = KnownHosts(tmp_path / "app_known_hosts", [system])
    assert known.check("secret.lab", 2200, a) == "known"
    assert known.check("secret.lab", 22, a) == "unknown"
    assert known.check("n1.farm", 22, a) == "known"
    assert known.check("bad.farm", 22, a) == "unknown"


def test_rsa_known_but_other_type_offered_is_other_type_not_unknown(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    rsa, ed = pub(keys["rsa"]), pub(keys["a"])
    system = tmp_path / "known_hosts"
    system.write_text(line("box", rsa) + "\n" + line("[box]:2222", ed) + "\n")
    known = KnownHosts(tmp_path / "app", [system])
    assert known.check("box", 22, ed) == "other_type"
    assert known.known_types("box", 22) == ["ssh-rsa"]
    assert known.check("box", 2222, rsa) == "other_type"  # per [host]:port, hashed or not
    assert known.check("other", 22, ed) == "unknown"
    assert known.forget_commands("box", 2222) == [f"ssh-keygen -R '[box]:2222' -f {system}"]
    known.add("box", 22, ed)  # a hashed line in the app file
    assert known.forget_commands("box", 22) == [
        f"ssh-keygen -R box -f {system}", f"ssh-keygen -R box -f {known.app_file}"
    ]


def test_add_appends_one_hashed_line_and_keeps_what_was_there(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    a, b = pub(keys["a"]), pub(keys["b"])
    app = tmp_path / "state" / "labdeck" / "known_hosts"
    known = KnownHosts(app, [])
    known.add("10.0.0.7", 2222, a)
    assert stat.S_IMODE(app.stat().st_mode) == 0o600
    assert stat.S_IMODE(app.parent.stat().st_mode) == 0o700
    before = app.read_text()
    with app.open("a") as handle:
        handle.write(f"@cert-authority *.x {b.get_name()} {b.get_base64()}\n")
    known.add("gpu5", 22, b)
    lines = app.read_text().splitlines()
    assert app.read_text().startswith(before) and len(lines) == 3
    for entry in (lines[0], lines[2]):
        assert entry.startswith("|1|")
        assert "10.0.0.7" not in entry and "gpu5" not in entry
    assert known.check("10.0.0.7", 2222, a) == "known"
    assert known.check("gpu5", 22, b) == "known"
    # paramiko itself can read the hashed lines we wrote (OpenSSH format).
    assert paramiko.hostkeys.HostKeyEntry.from_line(lines[0]).key == a


def test_changes_on_disk_are_picked_up(tmp_path: Path, keys: dict[str, Path]) -> None:
    a = pub(keys["a"])
    system = tmp_path / "known_hosts"
    known = KnownHosts(tmp_path / "app", [system])
    assert known.check("late", 22, a) == "unknown"
    system.write_text(line("late", a) + "\n")
    assert known.check("late", 22, a) == "known"
    system.write_text("")
    assert known.check("late", 22, a) == "unknown"
