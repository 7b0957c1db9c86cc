#!/usr/bin/env bash
# Runs Palisade's benchmarks and writes bench/results.md: every figure with
# the exact command that produced it. Ratios compare against a baseline
# measured in the same run, because these machines are shared and noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results.md
mkdir -p bench
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

{
  echo "# Benchmark results"
  echo
  echo "Written by \`make bench\` (scripts/bench.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'),"
  echo "$(nproc) cores, $(go version | awk '{print $3}'), kernel $(uname -r)."
  echo "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
} > "$out"

# section TITLE NOTE COMMAND...: runs COMMAND, appends its benchmark lines.
section() {
  local title=$1 note=$2; shift 2
  echo "== $title" >&2
  {
    echo "## $title"
    echo
    echo "$note"
    echo
    echo '```'
    echo "\$ $*"
  } >> "$out"
  if "$@" > "$tmp" 2>&1; then
    grep -E '^(Benchmark|ok|PASS)' "$tmp" >> "$out" || true
  else
    echo "(failed)"; tail -20 "$tmp"
  fi >> "$out"
  echo '```' >> "$out"
  echo >> "$out"
}

section "Replicated store: commit latency and throughput" \
  "Durable writes (bolt fsync on every batch) on loopback. Baseline: one replica, no replication round trip; compare the 3-replica rows against it." \
  go test -run '^$' -bench 'Write' -benchtime 2000x ./shared/store/

section "Replicated store: leader loss" \
  "Time from closing the leader of a 3-replica cluster to the first successful write through a survivor (goal: <= 3 s)." \
  go test -run '^$' -bench 'LeaderFailover' -benchtime 5x ./shared/store/

echo "wrote $out" >&2
