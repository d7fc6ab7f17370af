#!/usr/bin/env bash
# Provide what the HTML report tests (tests/browser.py) and the inbox's browser tests (tests/test_inbox_browser.py)
# need: Debian's headless-capable `chromium`, its `chromium-driver` (the WebDriver Selenium drives; the same
# Debian build as the browser, so their versions always match) and the DejaVu fonts the reports ask for, so
# the screenshots show real text. Installs them when missing and this
# runs as root with apt-get; otherwise says what is missing and exits non-zero. Safe to run repeatedly: with
# everything present it installs nothing and only says so.
#
#   bash .ci/chromium.sh && .venv/bin/pytest -q tests/test_simulate_html.py
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }
# shellcheck source=.ci/apt.sh
source "$(dirname "$0")/apt.sh"

chromium_bin() { command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null || true; }
driver_bin() { command -v chromedriver 2>/dev/null || true; }
fonts_present() { [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; }

missing=()
[ -n "$(chromium_bin)" ] || missing+=(chromium)
[ -n "$(driver_bin)" ] || missing+=(chromium-driver)
fonts_present || missing+=(fonts-dejavu-core)

if [ "${#missing[@]}" -eq 0 ]; then
    # The Debian launcher script can print noise on stderr; the version is on stdout.
    log "nothing to install: $("$(chromium_bin)" --version 2>/dev/null), $("$(driver_bin)" --version 2>/dev/null | cut -d' ' -f1-2), DejaVu fonts present"
    exit 0
fi
apt_install "${missing[@]}"
[ -n "$(chromium_bin)" ] || { log "chromium is still missing after installing it"; exit 1; }
[ -n "$(driver_bin)" ] || { log "chromedriver is still missing after installing chromium-driver"; exit 1; }
fonts_present || { log "DejaVu fonts are still missing after installing fonts-dejavu-core"; exit 1; }
log "installed ${missing[*]}: $("$(chromium_bin)" --version 2>/dev/null)"
