#!/usr/bin/env bash
# Set-up: installs everything the test suite needs, on a fresh machine, from any folder.
#   1. the project and its Python dependencies (requirements.txt), editable: pip install -e .
#   2. Chromium for the browser tests (tests/test_browser.py, test_label_review_browser.py drive it through Playwright; Playwright's own browser
#      download is not used). Found on PATH as `chromium` or `chromium-browser`, or at $CHROMIUM; when missing,
#      Debian/Ubuntu's `chromium` is installed with apt-get (through sudo unless run as root); on other systems
#      this script says what to run and exits 1.
set -euo pipefail
cd "$(dirname "$0")"

python -m pip install -e .

if [ -n "${CHROMIUM:-}" ] && [ -x "${CHROMIUM}" ]; then
  echo "setup: Chromium for the browser test: ${CHROMIUM}"
  exit 0
fi
if found="$(command -v chromium || command -v chromium-browser)"; then
  echo "setup: Chromium for the browser test: ${found}"
  exit 0
fi
if command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    SUDO=""
  elif command -v sudo >/dev/null; then
    SUDO="sudo"
  else
    echo "setup: the browser test needs Chromium; as root run: apt-get update && apt-get install -y chromium" >&2
    exit 1
  fi
  echo "setup: installing Debian's chromium for the browser test: ${SUDO:+$SUDO }apt-get install -y chromium"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium
  exit 0
fi
cat >&2 <<'EOF'
setup: the browser test (tests/test_browser.py) needs Chromium, and this system has no apt-get. Install it, then
rerun this script:
  Fedora/RHEL:  sudo dnf install -y chromium
  Arch:         sudo pacman -S --noconfirm chromium
  macOS:        brew install --cask chromium, then  export CHROMIUM="/Applications/Chromium.app/Contents/MacOS/Chromium"
EOF
exit 1
