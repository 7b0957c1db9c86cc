#!/usr/bin/env bash
# make demo: starts a Palisade controller cluster of three replicas on
# loopback, logs in, shows the cluster, and keeps it running until Ctrl-C,
# then stops every process and removes its files.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin/palisade
BASE=${PALISADE_DEMO_PORT_BASE:-17400}
work=$(mktemp -d /tmp/palisade-demo.XXXXXX)
pids=()

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
cleanup() {
  trap - EXIT INT TERM
  echo
  say "Stopping ${#pids[@]} processes and removing $work"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_log() { # FILE PATTERN TIMEOUT_S
  local deadline=$((SECONDS + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then echo "timed out waiting for '$2' in $1:"; tail -20 "$1"; exit 1; fi
    sleep 0.2
  done
}

head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$work/admin.pw"
export PALISADE_SESSION_FILE=$work/session.json

say "Starting a controller cluster of 3 replicas on 127.0.0.1 (logs in $work)"
for i in 1 2 3; do
  "$BIN" controller --name "ctl-$i" --cluster-name demo --data-dir "$work/ctl-$i" \
    --api-addr "127.0.0.1:$((BASE + i))" --raft-addr "127.0.0.1:$((BASE + 10 + i))" \
    --gossip-addr "127.0.0.1:$((BASE + 20 + i))" --join "127.0.0.1:$((BASE + 21))" \
    --bootstrap-expect 3 --admin-password-file "$work/admin.pw" > "$work/ctl-$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do wait_log "$work/ctl-$i.log" 'controller ready' 60; done
say "Replicas found each other through gossip and elected a leader"

API=https://127.0.0.1:$((BASE + 1))
"$BIN" login --api "$API" --ca-file "$work/ctl-1/ca.crt" --user admin --password-file "$work/admin.pw"
say "palisade cluster status"
"$BIN" cluster status

cat <<MSG

  API:            $API   (CA certificate: $work/ctl-1/ca.crt)
  Admin password: $(cat "$work/admin.pw")
  Try:            PALISADE_SESSION_FILE=$PALISADE_SESSION_FILE $BIN cluster status

Running. Press Ctrl-C to stop and clean up.
MSG
while true; do
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then say "a process exited unexpectedly; see $work"; exit 1; fi
  done
  sleep 1
done
