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

section "Policy engine: compile, incremental recompile, admission" \
  "10,000 rules over 5,000 workloads. Goals: incremental recompile < 10 ms, admission evaluation < 50 us (policy/BENCH.md)." \
  go test -run '^$' -bench 'CompileFull|Incremental|Evaluate' -benchtime 5x ./policy/compile/ ./policy/admit/

section "Cluster policy store: effective policy reads" \
  "1,000 documents, 1,000 groups, 2,000 rules (remote/policystore/BENCH.md)." \
  go test -run '^$' -bench . -benchtime 30x ./remote/policystore/

section "Federation fan-out: commit on the primary -> acked by every remote" \
  "Real QUIC + mutual TLS on loopback; simulated remotes in a child process. Goal: p99 <= 1 s to 1,000 remotes (primary/BENCH.md)." \
  go test -run '^$' -bench CommitToAck -benchtime=100x -timeout 20m ./primary/fedserver/

section "Registry scanning" \
  "Cold inventory of the Debian minbase image, re-scan of an unchanged digest, matching against the feed (registryscan/BENCH.md)." \
  go test -run '^$' -bench . -benchtime 5x -benchmem ./registryscan/scan/

# Trivy is built once into the development cache (scripts/trivy.sh, about
# 20 minutes); when it cannot be built the section says why.
if trivy_err=$(scripts/trivy.sh 2>&1 >/dev/null); then
  section "Registry scanning: side by side with Trivy" \
    "Cold package inventory of the same Debian minbase image tarball, interleaved runs, medians: palisade scan image --tar --format json (no cache) against trivy image --input --format cyclonedx (empty cache dir, no DB, offline), the ratio palisade/trivy, and the dpkg packages each one lists (registryscan/BENCH.md)." \
    scripts/trivy.sh bench 9
else
  printf '## Registry scanning: side by side with Trivy\n\nSkipped: Trivy could not be built.\n\n```\n%s\n```\n\n' "$(tail -5 <<<"$trivy_err")" >> "$out"
fi

section "Agent datapath: per-packet program cost and traffic ratios" \
  "Program run time per packet at 10 and 100,000 rules (flat is the goal), and TCP request/response and bulk throughput with no program, 10 rules and 100,000 rules, as ratios to the no-program baseline of the same run (ratio/* lines; paired/* lines: request/response in paired samples, with paired/empty a program that returns at once on the same hooks, the floor any program there starts from), and the datapath process's CPU and resident memory at rest (agent/BENCH.md). Needs root." \
  go test -run '^$' -bench BenchmarkPrivileged -benchtime 1s ./agent/datapath/

section "Agent datapath: compiling 100,000 verdicts" \
  "Time and memory to compile a table of 100,000 verdicts into the datapath's map entries (agent/BENCH.md)." \
  go test -run '^$' -bench BenchmarkCompileVerdicts -benchtime 3x -benchmem ./agent/datapath/

section "Agent flow table at its bound" \
  "New flows added to the agent's flow aggregator while it holds its bound of 65,536 flows (agent/BENCH.md)." \
  go test -run '^$' -bench BenchmarkAggregatorFull -benchtime 2000x ./agent/node/

section "Agent at rest: a real palisade agent beside its controller" \
  "Resident memory (VmRSS) and CPU per second over a 20 s quiet window of an enrolled agent (eBPF programs loaded, process control on, no workloads), with the controller's own figures as the baseline of the same run. Needs root (agent/BENCH.md)." \
  go test -run '^$' -bench AgentAtRest -benchtime 1x ./e2e/

section "Agent link: rule commit -> verdict in every agent's table" \
  "100 simulated agents on real QUIC links to one controller; time from a rule commit to the verdict being in every agent's compiled table. Goal: p99 <= 500 ms (remote/agents/BENCH.md)." \
  go test -run '^$' -bench BenchmarkCommitToAgents -benchtime 200x ./remote/agents/

section "Admission webhook latency" \
  "AdmissionReview round trips over HTTPS on loopback at 500 requests/s with 200 rules. Goal: p99 <= 5 ms (remote/admission/BENCH.md)." \
  go test -run '^$' -bench 'WebhookLatency' -benchtime 1x ./remote/admission/

section "Scan results to remotes" \
  "10,000 federated scan results from a primary to 100 remotes over real QUIC links. Goal: under 10 s (remote/scanning/BENCH.md)." \
  go test -run '^$' -bench ScanResultsToRemotes -benchtime=1x -timeout 20m ./e2e/

section "Scanner workers: a registry pass" \
  "20 new images scanned by in-process workers versus one remote 'palisade scanner' worker (remote/scanning/BENCH.md)." \
  go test -run '^$' -bench BenchmarkPass -benchtime=3x ./remote/scanning/worker/

section "Console: first useful paint in headless Chromium" \
  "Fleet page with 1,000 clusters and network map with 2,000 groups, measured in Debian's chromium (remote/console/BENCH.md)." \
  go test -run '^$' -bench 'FleetFirstPaint|NetworkMapFirstPaint' -benchtime 5x ./remote/console/

echo "wrote $out" >&2
