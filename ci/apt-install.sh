#!/usr/bin/env bash
# Install the Debian packages among PKG... that are not installed yet (root, non-interactive).
# Usage: ci/apt-install.sh WHO PKG...   (WHO prefixes the messages)
# Exit 0 when all are installed afterwards; 1, naming them, when some are missing and this is not
# root on Debian (the caller decides whether that is fatal).
set -euo pipefail
who=$1
shift
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "$who: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi
echo "$who: missing ${missing[*]} (apt-get install them, or run as root on Debian)" >&2
exit 1
