#!/usr/bin/env bash
# Installs Debian packages that tests need, only those missing:
#   scripts/install-deps.sh postfix python3-dkim
# Non-interactive (we run as root on a fresh Debian): one apt-get update, then
# apt-get install -y. Postfix is preseeded to 'No configuration' so its
# package scripts neither ask questions nor start a system-wide instance;
# tests run their own instance from a private config directory.
set -euo pipefail
missing=()
for pkg in "$@"; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$pkg")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

export DEBIAN_FRONTEND=noninteractive
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -E"
for pkg in "${missing[@]}"; do
	if [ "$pkg" = postfix ]; then
		echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
	fi
done
# Other jobs may hold the dpkg lock: wait for it rather than fail.
lock=(-o DPkg::Lock::Timeout=600)
$sudo apt-get "${lock[@]}" update -qq
$sudo apt-get "${lock[@]}" install -y -qq --no-install-recommends "${missing[@]}" >&2
