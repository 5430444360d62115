# Sourced by the service scripts (needs their `log`): `apt_install PACKAGE [apt-get install args...]`.
# Installs Debian packages, refreshing the package lists only when apt does not know PACKAGE yet, and once
# more when the download fails on stale lists. Run as root.
apt_install() {
    local package=$1
    shift
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show "$package" >/dev/null 2>&1; then
        log "apt-get update"
        apt-get update -qq >&2
    fi
    log "apt-get install -y $package"
    local install=(apt-get install -y -qq "$@")
    "${install[@]}" >&2 || { log "apt-get update"; apt-get update -qq >&2; "${install[@]}" >&2; }
}
