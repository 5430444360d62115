#!/usr/bin/env bash
# Headless Chromium for the browser tests: `tests/services/chromium.sh` installs Debian's `chromium` package
# when /usr/bin/chromium is missing (idempotent) and prints the browser's path on stdout. Playwright for
# Python drives this browser; no browser is ever downloaded by Playwright.
set -euo pipefail

BROWSER=/usr/bin/chromium

log() { echo "chromium.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=tests/services/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

if [[ ! -x $BROWSER || ! -d /usr/share/fonts/truetype/noto ]]; then
    [[ $EUID -eq 0 ]] || die "chromium is not installed and installing it needs root (apt-get install chromium)"
    apt_install chromium --no-install-recommends chromium fonts-dejavu-core fonts-noto-color-emoji
fi
[[ -x $BROWSER ]] || die "$BROWSER is missing after installing chromium"
echo "$BROWSER"
