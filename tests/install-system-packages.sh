#!/usr/bin/env bash
# Install the Debian packages the tests need: tests/system-packages.txt, the one list.
# `make test-deps` and .ci/run run this; apt-get goes through sudo when not root.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

mapfile -t packages < <(sed -e 's/#.*//' tests/system-packages.txt | awk 'NF { print $1 }')
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if ((${#missing[@]} == 0)); then
  echo "test-deps: all ${#packages[@]} Debian packages are installed"
  exit 0
fi
as_root=()  # CI here runs as root; GitHub's runners and a developer's machine need sudo
if [[ $(id -u) -ne 0 ]]; then as_root=(sudo --preserve-env=DEBIAN_FRONTEND); fi
echo "test-deps: installing ${missing[*]}"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
