#!/usr/bin/env bash
# Install the Debian packages filmroll needs to build and run (FUSE, image codecs, ffmpeg, exiftool).
# Run as root on Debian 12. As a non-root user it only checks and names what is missing.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config python3-dev python3-venv
  fuse3 libfuse3-dev
  libjpeg62-turbo-dev zlib1g-dev libwebp-dev libtiff-dev libfreetype-dev liblcms2-dev libopenjp2-7-dev
  libheif-dev libheif-examples
  libimage-exiftool-perl ffmpeg libvips-tools
  systemd
  samba smbclient rsync  # tests/e2e/test_fsview_e2e.py: the FUSE view shared over SMB, copied with rsync
  chromium  # tests/web/test_browser.py: the web pages in a real (headless) browser, driven by Playwright
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "filmroll needs these Debian packages, which are not installed:" >&2
  echo "  ${missing[*]}" >&2
  echo "Install them as root:  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
