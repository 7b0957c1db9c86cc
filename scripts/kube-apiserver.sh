#!/usr/bin/env bash
# Builds kube-apiserver from the Go module proxy, once, and caches the binary
# outside the repository. The end-to-end admission test runs it against etcd
# on loopback.
#
# The build is a throwaway module in a temporary directory that requires
# k8s.io/kubernetes at $KUBE_VERSION and replaces every k8s.io staging module
# (read from that version's own go.mod) by the matching v0.x.y release. A cold
# build takes about 10-15 minutes on two cores; later runs return at once.
#
# Usage: scripts/kube-apiserver.sh [CACHE_DIR]   (prints the binary's path)
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
CACHE_DIR=${1:-${CACHE_DIR:-/var/cache/palisade-dev}}
GO=${GO:-go}
out="$CACHE_DIR/kube-apiserver-$KUBE_VERSION"

if [ -x "$out" ] && "$out" --version 2>/dev/null | grep -qx "Kubernetes $KUBE_VERSION"; then
  echo "$out"
  exit 0
fi

# v1.37.2 -> staging modules at v0.37.2.
minor=${KUBE_VERSION#v1.}
staging_version="v0.$minor"
major=1
minor_only=${minor%%.*}

mkdir -p "$CACHE_DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "kube-apiserver: building $KUBE_VERSION in $work (cold builds take 10-15 minutes)" >&2
export GOFLAGS=-mod=mod GOWORK=off
"$GO" mod init palisade.dev/kube-apiserver-build >/dev/null 2>&1

# The staging modules are exactly the k8s.io modules kubernetes replaces with
# ./staging/src/... in its own go.mod.
kmod=$("$GO" mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
if [ -z "$kmod" ] || [ ! -f "$kmod" ]; then
  echo "kube-apiserver: cannot read go.mod of k8s.io/kubernetes@$KUBE_VERSION" >&2
  exit 2
fi
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9.-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "$kmod" | sort -u)
if [ ${#staging[@]} -eq 0 ]; then
  echo "kube-apiserver: no staging modules found in $kmod" >&2
  exit 2
fi

edits=(-require "k8s.io/kubernetes@$KUBE_VERSION")
for m in "${staging[@]}"; do
  edits+=(-replace "$m=$m@$staging_version")
done
"$GO" mod edit "${edits[@]}"
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor_only"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
done
CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w$ldflags" -o "$out.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$out.tmp" "$out"
echo "$out"
