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
# shellcheck source=.ci/apt.sh
source "$(dirname "$0")/apt.sh"

missing=()
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)

if [ "${#missing[@]}" -eq 0 ]; then
    log "nothing to install: $(PATH="$PATH:/usr/sbin:/sbin" nft --version), $(PATH="$PATH:/usr/sbin:/sbin" ip -V)"
    exit 0
fi
apt_install "${missing[@]}"
export PATH="$PATH:/usr/sbin:/sbin"
command -v nft >/dev/null 2>&1 || { log "nft is still missing after installing nftables"; exit 1; }
command -v ip >/dev/null 2>&1 || { log "ip is still missing after installing iproute2"; exit 1; }
log "installed ${missing[*]}: $(nft --version), $(ip -V)"
