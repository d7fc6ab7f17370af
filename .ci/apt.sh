# Sourced by the .ci install scripts (chromium.sh, nftables.sh): install Debian packages when this runs as root
# with apt-get, or say what is missing and why it cannot be installed here, and exit 1. Uses the caller's `log`.
# Always --no-install-recommends: recommends pull daemons onto a server (Chromium's: avahi-daemon, printing).
#
#   apt_install PACKAGE...
apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        log "missing $*; installing needs root (run as root, or: apt-get install -y --no-install-recommends $*)"
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing $* and there is no apt-get here: install them with this system's package manager"
        exit 1
    fi
    log "installing Debian $*"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}
