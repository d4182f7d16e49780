#!/usr/bin/env bash
# Sets up everything Labdeck needs on a fresh Debian/Ubuntu machine, then either opens the
# app or runs the whole test suite with its quality gates.
#   bash installer/dev.sh app                   set up, then open Labdeck on the demo lab
#   bash installer/dev.sh app [labdeck args…]   set up, then run labdeck with those args
#   bash installer/dev.sh test [pytest args…]   set up, then ruff, mypy, import-linter, pytest
#   bash installer/dev.sh reliability           set up, then the full-size reliability run
#                                               (the test command runs its quick variant)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
mode="${1:-}"; shift || true

# System packages: sshd for the lab-in-a-box tests, Qt's runtime libraries, a font,
# dbus-daemon for the desktop-notification test's private session bus, and a real Slurm
# (munge, slurmctld, slurmd, the client commands) that the Slurm-pool tests configure and
# start in a folder of their own.
sys_pkgs=(openssh-server openssh-client libgl1 libegl1 libxkbcommon0 libxkbcommon-x11-0
          libfontconfig1 libdbus-1-3 dbus fonts-dejavu-core iproute2 util-linux python3-venv
          libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0
          libxcb-shape0 libxcb-xinerama0 libxcb-xkb1
          libwayland-client0 libwayland-cursor0 libwayland-egl1
          desktop-file-utils appstream
          munge slurmctld slurmd slurm-client)
missing=()
for p in "${sys_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "Installing system packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "Missing system packages: ${missing[*]}" >&2
        echo "Install them with: sudo apt-get install ${missing[*]}" >&2
        [[ $mode == test || $mode == reliability ]] && exit 1
    fi
fi

# The virtual environment, reinstalled only when pyproject.toml changes.
py="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "$py" -m venv .venv
fi
stamp=.venv/.labdeck-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[test]"
    echo "$want" > "$stamp"
fi

case "$mode" in
    app)
        # Without arguments: the demo lab (simulated workstations, its own data folder),
        # so a fresh machine shows Labdeck at work without a GPU workstation.
        (($#)) || set -- --demo
        exec .venv/bin/labdeck "$@"
        ;;
    test)
        export QT_QPA_PLATFORM=offscreen
        echo "== ruff"; .venv/bin/ruff check app ssh_backend tests installer
        echo "== mypy"; .venv/bin/mypy app ssh_backend
        echo "== import-linter"; .venv/bin/lint-imports
        echo "== pytest"
        set +e
        .venv/bin/python -m pytest "$@"
        rc=$?
        set -e
        # pytest's 5 means no test ran: that is a failure, never a pass.
        if [[ $rc -eq 5 ]]; then echo "No tests were collected." >&2; exit 1; fi
        exit $rc
        ;;
    reliability)
        # The same checks as the test command's tests/reliability, at full size: the
        # 300-run chaos run, four apps on shared hosts, fuzzing with more examples.
        export QT_QPA_PLATFORM=offscreen LABDECK_RELIABILITY=full
        set +e
        .venv/bin/python -m pytest tests/reliability -p no:cacheprovider -s \
            -o timeout=3600 "$@"
        rc=$?
        set -e
        if [[ $rc -eq 5 ]]; then echo "No tests were collected." >&2; exit 1; fi
        exit $rc
        ;;
    *)
        echo "usage: bash installer/dev.sh app|test|reliability [args…]" >&2
        exit 2
        ;;
esac
