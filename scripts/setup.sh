#!/usr/bin/env bash
# Sets up everything punktfunk needs on Debian 12: the Debian packages (installed when run as
# root, listed with the exact command otherwise), a virtualenv in .venv and the package in it
# (which builds the native FEC kernel). Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
    python3 python3-venv python3-dev gcc libc6-dev linux-libc-dev
    xvfb xserver-xorg-video-dummy x11-xserver-utils x11-utils
    pulseaudio pulseaudio-utils edid-decode
    chromium chromium-driver
    sway foot xwayland gamescope mesa-vulkan-drivers
    dbus pipewire pipewire-bin wireplumber xdg-desktop-portal
    gstreamer1.0-tools gstreamer1.0-pipewire gstreamer1.0-plugins-base gstreamer1.0-plugins-bad
)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in "${DEB_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
    done
else
    echo "setup: no dpkg here; make sure these (Debian names) are installed: ${DEB_PACKAGES[*]}" >&2
fi

if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        echo "setup: installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "setup: missing Debian packages: ${missing[*]}" >&2
        echo "setup: install them with:  sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: $PYTHON is $("$PYTHON" -V 2>&1); punktfunk needs Python >= 3.11" >&2
    exit 1
fi
if [[ ! -x .venv/bin/python ]]; then
    echo "setup: creating .venv with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -U pip
echo "setup: installing punktfunk into .venv (builds the native FEC kernel)"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
echo "setup: done (.venv/bin/punktfunk)"
