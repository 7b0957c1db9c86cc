#!/usr/bin/env bash
# make demo: a Palisade fleet on one machine. A primary cluster of three
# controller replicas and two remote clusters start on loopback; the primary
# is promoted, the remotes join with signed tokens, and a federated policy is
# rolled out in waves (canary first) and shown arriving in both remotes. It
# keeps running until Ctrl-C, then stops every process and removes its files.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin/palisade
BASE=${PALISADE_DEMO_PORT_BASE:-17400}
work=$(mktemp -d /tmp/palisade-demo.XXXXXX)
pids=()

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
cleanup() {
  trap - EXIT INT TERM
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

# controller NAME CLUSTER N JOIN_PORT EXPECT: ports are BASE + N*10 + {1..6}
# for API, Raft, gossip, federation, the admission webhook and agents.
controller() {
  local name=$1 cluster=$2 n=$3 join=$4 expect=$5 p=$((BASE + $3 * 10))
  "$BIN" controller --name "$name" --cluster-name "$cluster" --data-dir "$work/$name" \
    --api-addr "127.0.0.1:$((p + 1))" --raft-addr "127.0.0.1:$((p + 2))" \
    --gossip-addr "127.0.0.1:$((p + 3))" --fed-addr "127.0.0.1:$((p + 4))" \
    --admission-addr "127.0.0.1:$((p + 5))" --agent-addr "127.0.0.1:$((p + 6))" \
    --join "127.0.0.1:$join" --bootstrap-expect "$expect" \
    --admin-password-file "$work/admin.pw" > "$work/$name.log" 2>&1 &
  pids+=($!)
}
api() { echo "https://127.0.0.1:$((BASE + $1 * 10 + 1))"; }
# as CLUSTER_DIR VERB...: runs the CLI against one cluster's saved session.
as() { local c=$1; shift; PALISADE_SESSION_FILE="$work/$c.session" "$BIN" "$@"; }

say "Starting the primary cluster 'hq' (3 replicas) and remote clusters 'east' and 'west' (1 replica each) on 127.0.0.1"
controller hq-1 hq 1 $((BASE + 13)) 3
controller hq-2 hq 2 $((BASE + 13)) 3
controller hq-3 hq 3 $((BASE + 13)) 3
controller east-1 east 4 $((BASE + 43)) 1
controller west-1 west 5 $((BASE + 53)) 1
for n in hq-1 hq-2 hq-3 east-1 west-1; do wait_log "$work/$n.log" 'controller ready' 90; done
echo "All five replicas are ready; the hq replicas found each other through gossip and elected a leader."

as hq login --api "$(api 1)" --ca-file "$work/hq-1/ca.crt" --password-file "$work/admin.pw" >/dev/null
as east login --api "$(api 4)" --ca-file "$work/east-1/ca.crt" --password-file "$work/admin.pw" >/dev/null
as west login --api "$(api 5)" --ca-file "$work/west-1/ca.crt" --password-file "$work/admin.pw" >/dev/null
say "palisade cluster status (hq)"
as hq cluster status

say "Promoting hq to primary and issuing a join token"
as hq fed promote
token=$(as hq fed token create --ttl 30m 2>/dev/null)
echo "token: ${token:0:48}... (signed, expires in 30 minutes, pins hq's CA)"

say "Joining east (env=prod) and west (env=dev) with the token"
as east fed join --token "$token" --label env=prod
as west fed join --token "$token" --label env=dev
deadline=$((SECONDS + 60))
until [ "$(as hq fed status -o json | grep -c '"connected": true')" -ge 2 ]; do
  if [ $SECONDS -ge $deadline ]; then echo "remotes did not connect"; as hq fed status; exit 1; fi
  sleep 0.5
done
as hq fed status

cat > "$work/policy.yaml" <<'YAML'
apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata:
  name: shop-web
spec:
  selector:
    name: shop-web
    criteria:
    - {key: app, op: "=", value: web}
    - {key: namespace, op: "=", value: shop}
---
apiVersion: palisade.dev/v1
kind: AdmissionRule
metadata:
  name: no-privileged-pods
spec:
  mode: protect
  rules:
  - name: deny-privileged
    action: deny
    comment: privileged containers are not allowed anywhere in the fleet
    criteria:
    - {name: runAsPrivileged, op: "=", value: "true"}
---
apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata:
  name: prod-payments
  annotations:
    palisade.dev/clusters: env=prod
spec:
  selector:
    name: prod-payments
    criteria:
    - {key: app, op: "=", value: payments}
YAML
say "Rolling out a federated policy in waves: east is the canary, west follows once east has applied it"
as hq fed rollout start -f "$work/policy.yaml" --canary east
deadline=$((SECONDS + 30))
until as hq fed rollout | grep -q 'phase done'; do
  if [ $SECONDS -ge $deadline ]; then break; fi
  sleep 0.3
done
as hq fed rollout
say "What each remote received (prod-payments targets env=prod only)"
for c in east west; do
  echo "-- $c"
  as "$c" fed status
done
as hq fed status

cat <<MSG

  Primary API:    $(api 1)   (CA certificate: $work/hq-1/ca.crt)
  Admin password: $(cat "$work/admin.pw")   (user admin, on every cluster)
  Try:            PALISADE_SESSION_FILE=$work/hq.session $BIN fed status
                  PALISADE_SESSION_FILE=$work/hq.session $BIN fed history
  Logs:           $work/*.log

Running. Press Ctrl-C to stop and clean up.
MSG
while true; do
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then say "a process exited unexpectedly; see $work"; exit 1; fi
  done
  sleep 1
done
