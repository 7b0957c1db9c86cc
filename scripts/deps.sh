#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, only when missing.
# Runs as root (CI and the development machines are root); without root it
# says what is missing instead.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Each line: a Debian package and how to tell it is there.
check() { local p=$1 probe=$2; eval "$probe" >/dev/null 2>&1 || need+=("$p"); }
check iproute2 'have ip'
check clang 'have clang'
check llvm 'have llvm-strip'
check libbpf-dev 'test -f /usr/include/bpf/bpf_helpers.h'
check debootstrap 'have debootstrap'
check rpm 'have rpmbuild'
check db-util 'have db_load'
check chromium 'have chromium'
check etcd-server 'have etcd'
check openssl 'have openssl'
check redis-server 'have redis-server'
check curl 'have curl'
check python3 'have python3'
check containerd 'have containerd && have runc'

if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing Debian packages: ${need[*]} (run as root, or install them with apt-get)" >&2
  exit 1
fi
echo "deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
