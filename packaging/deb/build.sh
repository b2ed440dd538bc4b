#!/usr/bin/env bash
# Builds dist/punktfunk_<version>_<arch>.deb on Debian 12 (needs python3-venv, gcc,
# python3-dev, dpkg-dev and access to a package index for the dependencies).
#
# The package carries punktfunk and every dependency as wheels built for this Debian's python3
# (/opt/punktfunk/wheels); postinst installs them offline into /opt/punktfunk/venv. It also
# carries /usr/bin/punktfunk and the system unit /lib/systemd/system/punktfunk.service (the
# one `punktfunk service install` writes), not enabled.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-dist}
version=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
arch=$(dpkg --print-architecture)
read -r pymin pymax < <("$PYTHON" -c 'import sys; v = sys.version_info; print(f"{v[0]}.{v[1]} {v[0]}.{v[1] + 1}")')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"

echo "build.sh: wheels for punktfunk $version and its dependencies ($("$PYTHON" -V))"
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check -U pip
"$work/venv/bin/pip" wheel --quiet --disable-pip-version-check \
    --wheel-dir "$root/opt/punktfunk/wheels" .

echo "build.sh: the system unit"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check --no-index \
    --find-links "$root/opt/punktfunk/wheels" punktfunk
"$work/venv/bin/punktfunk" service install --unit-dir "$root/lib/systemd/system" \
    --python /opt/punktfunk/venv/bin/python --log-level warning >/dev/null

mkdir -p "$root/usr/bin" "$root/DEBIAN"
ln -s /opt/punktfunk/venv/bin/punktfunk "$root/usr/bin/punktfunk"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@PYMIN@/$pymin/" \
    -e "s/@PYMAX@/$pymax/" packaging/deb/control.in >"$root/DEBIAN/control"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
mkdir -p "$OUT"
deb="$OUT/punktfunk_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "build.sh: $deb ($(du -h "$deb" | cut -f1))"
