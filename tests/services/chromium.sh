#!/usr/bin/env bash
# Headless Chromium for the browser tests: `tests/services/chromium.sh` installs Debian's `chromium` package
# when /usr/bin/chromium is missing (idempotent) and prints the browser's path on stdout. Playwright for
# Python drives this browser; no browser is ever downloaded by Playwright.
set -euo pipefail

BROWSER=/usr/bin/chromium

log() { echo "chromium.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ ! -x $BROWSER || ! -d /usr/share/fonts/truetype/noto ]]; then
    [[ $EUID -eq 0 ]] || die "chromium is not installed and installing it needs root (apt-get install chromium)"
    export DEBIAN_FRONTEND=noninteractive
    # Only refresh the package lists when apt does not know the package yet.
    if ! apt-cache show chromium >/dev/null 2>&1; then
        log "apt-get update"
        apt-get update -qq >&2
    fi
    log "apt-get install -y chromium"
    install=(apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fonts-noto-color-emoji)
    # Stale package lists make the download fail: refresh them once and try again.
    "${install[@]}" >&2 || { log "apt-get update"; apt-get update -qq >&2; "${install[@]}" >&2; }
fi
[[ -x $BROWSER ]] || die "$BROWSER is missing after installing chromium"
echo "$BROWSER"
