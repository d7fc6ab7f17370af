#!/usr/bin/env bash
# Provide what the nftables enforcement tests (tests/test_nftables.py, marker `lab`) need: the `nft` binary
# and iproute2's `ip` (network namespaces). Installs Debian's `nftables` / `iproute2` when one is missing and
# this runs as root with apt-get; otherwise says what is missing and exits non-zero. Safe to run repeatedly.
#
#   bash .ci/nftables.sh && .venv/bin/pytest -q -m lab
#
# It never touches a ruleset: installing the package does not load /etc/nftables.conf (the service is not
# started here), and the tests work only inside network namespaces they create and delete.
set -euo pipefail

log() { echo "nftables.sh: $*" >&2; }

missing=()
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)

if [ "${#missing[@]}" -eq 0 ]; then
    log "nothing to install: $(PATH="$PATH:/usr/sbin:/sbin" nft --version), $(PATH="$PATH:/usr/sbin:/sbin" ip -V)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "missing ${missing[*]}; installing needs root (run as root, or: apt-get install -y ${missing[*]})"
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "missing ${missing[*]} and there is no apt-get here: install them with this system's package manager"
    exit 1
fi

log "installing Debian ${missing[*]}"
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
export PATH="$PATH:/usr/sbin:/sbin"
command -v nft >/dev/null 2>&1 || { log "nft is still missing after installing nftables"; exit 1; }
command -v ip >/dev/null 2>&1 || { log "ip is still missing after installing iproute2"; exit 1; }
log "installed ${missing[*]}: $(nft --version), $(ip -V)"
