#!/usr/bin/env bash
# Trivy beside Palisade: a pinned Trivy release built from the Go module
# proxy into the development cache, and a side-by-side measurement of the
# cold package inventory of the Debian bookworm minbase image.
#
# Trivy is built from its module source (go mod download, then go build in
# a copy of it) because "go install" cannot read the module's version list
# through the proxy. The binary is cached as $CACHE_DIR/bin/trivy-VERSION
# (several minutes, once); nothing of Trivy enters the repository.
#
# Usage:
#   scripts/trivy.sh            print the cached Trivy binary's path, building it when missing
#   scripts/trivy.sh bench [N]  N interleaved cold runs of each tool (default 7) on the same
#                               image tarball; prints benchmark lines (medians and the ratio
#                               palisade/trivy) and compares the dpkg packages each one lists
# Exit status: 0 done, 1 the measurement failed, 3 Trivy could not be built.
set -euo pipefail

TRIVY_VERSION=v0.72.0
CACHE_DIR=${CACHE_DIR:-${PALISADE_CACHE_DIR:-/var/cache/palisade-dev}}
GO=${GO:-go}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$CACHE_DIR/bin
image=$CACHE_DIR/bookworm-minbase-image.tar
mkdir -p "$bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# trivy_bin prints the cached binary's path, building it when missing.
trivy_bin() {
  local path=$bin/trivy-$TRIVY_VERSION dir
  if [ -x "$path" ]; then
    echo "$path"
    return 0
  fi
  echo "trivy: building Trivy $TRIVY_VERSION into $bin (once; several minutes)" >&2
  dir=$(cd "$work" && "$GO" mod download -json "github.com/aquasecurity/trivy@$TRIVY_VERSION" 2>"$work/download.log" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || dir=
  if [ -z "$dir" ]; then
    echo "trivy: cannot download the module github.com/aquasecurity/trivy@$TRIVY_VERSION:" >&2
    tail -5 "$work/download.log" >&2
    return 3
  fi
  cp -r "$dir" "$work/src"
  chmod -R u+w "$work/src"
  # The release build's settings (goreleaser.yml): static, json/v2 on.
  if ! (cd "$work/src" && CGO_ENABLED=0 GOEXPERIMENT=jsonv2 GOFLAGS='-mod=mod -buildvcs=false' "$GO" build -trimpath \
    -ldflags "-s -w -X github.com/aquasecurity/trivy/pkg/version/app.ver=${TRIVY_VERSION#v}" \
    -o "$work/trivy" ./cmd/trivy) >"$work/build.log" 2>&1; then
    echo "trivy: cannot build Trivy $TRIVY_VERSION:" >&2
    grep -v '^go: downloading' "$work/build.log" | tail -10 >&2
    return 3
  fi
  mv "$work/trivy" "$path.tmp"
  mv "$path.tmp" "$path"
  echo "$path"
}

# image_tar makes sure the image tarball exists: the debootstrap tree of
# the registry scanner's tests, as one gzip layer, written by crane.
image_tar() {
  [ -f "$image" ] && return 0
  local tree=$CACHE_DIR/bookworm-minbase crane=$bin/crane
  if [ ! -f "$tree/var/lib/dpkg/status" ]; then
    echo "trivy: no Debian tree in $tree (go test -run XXX -bench ColdInventory ./registryscan/scan/ builds it)" >&2
    return 1
  fi
  if [ ! -x "$crane" ]; then
    GOBIN=$bin "$GO" install github.com/google/go-containerregistry/cmd/crane@v0.22.1
  fi
  tar -C "$tree" --numeric-owner -czf "$work/layer.tar.gz" .
  "$crane" append -f "$work/layer.tar.gz" -t debian/minbase:bookworm -o "$image.tmp"
  mv "$image.tmp" "$image"
}

# run NAME COMMAND...: runs COMMAND under /usr/bin/time, appends
# "seconds user+sys maxrss-KB" to $work/NAME.times.
run() {
  local name=$1
  shift
  if ! /usr/bin/time -o "$work/time" -f '%e %U %S %M' "$@" >"$work/$name.out" 2>"$work/$name.err"; then
    echo "trivy: $name failed: $*" >&2
    tail -20 "$work/$name.err" >&2
    exit 1
  fi
  awk '{printf "%s %.2f %s\n", $1, $2 + $3, $4}' "$work/time" >>"$work/$name.times"
}

# median FILE COLUMN
median() {
  sort -g -k"$2,$2" "$1" | awk -v c="$2" '{v[NR] = $c} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

bench() {
  local n=${1:-7} trivy i cache
  trivy=$(trivy_bin) || exit 3
  image_tar
  (cd "$root" && "$GO" build -o "$work/palisade" ./cmd/palisade)
  echo "trivy: $n interleaved cold runs of each on $image" >&2
  for ((i = 1; i <= n; i++)); do
    cache=$(mktemp -d "$work/trivy-cache.XXXXXX")
    # Alternate which tool goes first, so neither gets the page cache's favour.
    trivy_run() {
      run trivy "$trivy" image --input "$image" --format cyclonedx --cache-dir "$cache" \
        --skip-db-update --skip-java-db-update --skip-check-update --skip-version-check --disable-telemetry \
        --offline-scan --no-progress --quiet
    }
    palisade_run() { run palisade "$work/palisade" scan image --tar "$image" --format json; }
    if ((i % 2)); then palisade_run; trivy_run; else trivy_run; palisade_run; fi
    rm -rf "$cache"
  done

  # The dpkg packages each one listed, as name=version lines.
  python3 - "$work/palisade.out" "$work/trivy.out" "$work" <<'EOF'
import json, sys
pal, tri, work = sys.argv[1:4]
p = {f"{x['name']}={x['version']}" for x in json.load(open(pal))["packages"] if x["type"] == "deb"}
t = set()
for c in json.load(open(tri)).get("components", []):
    if c.get("purl", "").startswith("pkg:deb/"):
        t.add(f"{c['name']}={c['version']}")
open(f"{work}/counts", "w").write(f"{len(p)} {len(t)} {len(p & t)} {len(p - t)} {len(t - p)}\n")
for name, only in (("palisade", p - t), ("trivy", t - p)):
    for x in sorted(only):
        print(f"only {name}: {x}", file=sys.stderr)
EOF
  local pw pc pm tw tc tm pn tn both op ot
  pw=$(median "$work/palisade.times" 1); pc=$(median "$work/palisade.times" 2); pm=$(median "$work/palisade.times" 3)
  tw=$(median "$work/trivy.times" 1); tc=$(median "$work/trivy.times" 2); tm=$(median "$work/trivy.times" 3)
  read -r pn tn both op ot <"$work/counts"
  echo "BenchmarkColdInventoryDebian/palisade  $n  $pw wall-s  $pc cpu-s  $pm maxrss-KB  $pn deb-pkgs"
  echo "BenchmarkColdInventoryDebian/trivy-$TRIVY_VERSION  $n  $tw wall-s  $tc cpu-s  $tm maxrss-KB  $tn deb-pkgs"
  awk -v pw="$pw" -v tw="$tw" -v pc="$pc" -v tc="$tc" -v n="$n" \
    'BEGIN {printf "BenchmarkColdInventoryDebian/ratio-palisade/trivy  %d  %.2f wall  %.2f cpu\n", n, pw / tw, pc / tc}'
  # The same name=version in both; the differences, if any, are on stderr.
  echo "BenchmarkColdInventoryDebian/deb-pkgs-compared  1  $both in-both  $op only-palisade  $ot only-trivy"
}

case ${1:-} in
"") trivy_bin ;;
bench) bench "${2:-7}" ;;
*)
  echo "usage: scripts/trivy.sh [bench [N]]" >&2
  exit 2
  ;;
esac
