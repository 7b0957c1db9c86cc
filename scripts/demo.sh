#!/usr/bin/env bash
# make demo: a Palisade fleet on one machine. A primary cluster of three
# controller replicas and two remote clusters start on loopback; the primary
# is promoted, the remotes join with signed tokens, and a federated policy is
# rolled out in waves (canary first) and shown arriving in both remotes. The
# primary scans a local registry holding a small Alpine image and the
# Palisade image itself (make image), and the results reach the remotes. A
# coffee shop runs in network namespaces with a real agent of cluster east
# enforcing in the kernel: its traffic is learned, then Protect blocks a
# flow never seen before. It keeps running until Ctrl-C, then stops every
# process and removes its namespaces, pinned eBPF objects and files.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin/palisade
BASE=${PALISADE_DEMO_PORT_BASE:-17400}
work=$(mktemp -d /tmp/palisade-demo.XXXXXX)
pids=()

NODE_NS=pal-demo-node
ROLES=(orders payments inventory redis client)
PIN_DIR=/sys/fs/bpf/palisade/pal-demo-node

if [ "$(id -u)" != 0 ]; then
  cat >&2 <<'MSG'
make demo needs root: it creates network namespaces and veth pairs for the demo workloads,
and the Palisade agent loads eBPF programs into the kernel to enforce policy on them.
Run it as root (for example: sudo make demo). It removes everything it created on Ctrl-C.
MSG
  exit 1
fi

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
cleanup() {
  trap - EXIT INT TERM
  say "Stopping ${#pids[@]} processes, deleting the demo's network namespaces and pinned eBPF objects, removing $work"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for r in "${ROLES[@]}"; do ip netns del "pal-demo-$r" 2>/dev/null || true; done
  ip netns del "$NODE_NS" 2>/dev/null || true
  rm -rf "$PIN_DIR"
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

# Advisory data for scanning (the project's shared test data when present).
VULNDB=${PALISADE_VULNDB:-$(cd .. && pwd)/shared/vulndata/alpine-secdb}
vulndb_flag=()
if [ -d "$VULNDB" ]; then vulndb_flag=(--vulndb "$VULNDB"); fi
# crane (go-containerregistry's CLI) serves the demo's registry and pushes to it.
CRANE=${CRANE:-/var/cache/palisade-dev/bin/crane}
if [ ! -x "$CRANE" ]; then
  echo "Installing crane (go-containerregistry) into $(dirname "$CRANE")"
  GOBIN=$(dirname "$CRANE") go install github.com/google/go-containerregistry/cmd/crane@v0.22.1
fi

# controller NAME CLUSTER N JOIN_PORT EXPECT: ports are BASE + N*10 + {1..6}
# for API, Raft, gossip, federation, the admission webhook and agents.
controller() {
  local name=$1 cluster=$2 n=$3 join=$4 expect=$5 p=$((BASE + $3 * 10))
  "$BIN" controller --name "$name" --cluster-name "$cluster" --data-dir "$work/$name" \
    --api-addr "127.0.0.1:$((p + 1))" --raft-addr "127.0.0.1:$((p + 2))" \
    --gossip-addr "127.0.0.1:$((p + 3))" --fed-addr "127.0.0.1:$((p + 4))" \
    --admission-addr "127.0.0.1:$((p + 5))" --agent-addr "127.0.0.1:$((p + 6))" \
    --join "127.0.0.1:$join" --bootstrap-expect "$expect" \
    --admin-password-file "$work/admin.pw" "${vulndb_flag[@]}" > "$work/$name.log" 2>&1 &
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
deadline=$((SECONDS + 90))
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

REG=127.0.0.1:$((BASE + 90))
say "Starting a local OCI registry ($REG) and pushing shop/orders:1.0, an Alpine image with ansible 2.9.2-r0"
"$CRANE" registry serve --address "$REG" > "$work/registry.log" 2>&1 &
pids+=($!)
mkdir -p "$work/img/etc" "$work/img/lib/apk/db"
printf 'ID=alpine\nVERSION_ID=3.11.6\n' > "$work/img/etc/os-release"
printf 'P:ansible\nV:2.9.2-r0\no:ansible\n\n' > "$work/img/lib/apk/db/installed"
tar -C "$work/img" -czf "$work/layer.tar.gz" etc lib
for _ in $(seq 50); do "$CRANE" catalog --insecure "$REG" >/dev/null 2>&1 && break; sleep 0.1; done
"$CRANE" append --insecure -f "$work/layer.tar.gz" -t "$REG/shop/orders:1.0" >/dev/null 2>&1
# The Palisade image itself (make image), pushed by deploy/imagebuild.
IMAGE_VERSION=$(sed -n 's/^appVersion: *"*\([^"]*\)"*$/\1/p' deploy/helm/palisade/Chart.yaml)
say "Building the Palisade image (make image: the static binary on an empty base) and pushing it as $REG/palisade:$IMAGE_VERSION"
if ! make --no-print-directory -s image IMAGE_PUSH="$REG/palisade" > "$work/image.log" 2>&1; then
  echo "make image failed:"; tail -20 "$work/image.log"; exit 1
fi
sed -n '/^pushed /p' "$work/image.log"

say "The primary scans the registry once for the whole fleet; the results stream to east and west by digest"
as hq registry add shop "http://$REG" --fed --insecure
deadline=$((SECONDS + 90))
until as west scan result "$REG/shop/orders:1.0" >/dev/null 2>&1 && as east scan result "$REG/shop/orders:1.0" >/dev/null 2>&1 &&
  as hq scan result "$REG/palisade:$IMAGE_VERSION" >/dev/null 2>&1; do
  if [ $SECONDS -ge $deadline ]; then echo "scan results did not reach the remotes"; break; fi
  sleep 0.5
done
echo "-- west (never pulled the image):"
out=$(as west scan result "$REG/shop/orders:1.0")
head -n 12 <<<"$out"
echo "-- hq, the Palisade image (Go modules read from the binary's build information):"
out=$(as hq scan result "$REG/palisade:$IMAGE_VERSION")
head -n 12 <<<"$out"

say "Starting the coffee shop in network namespaces: orders, payments, inventory (HTTP), redis, and an outside client"
ip netns del "$NODE_NS" 2>/dev/null || true
ip netns add "$NODE_NS"
ip -n "$NODE_NS" link set lo up
ip netns exec "$NODE_NS" sysctl -qw net.ipv4.ip_forward=1
declare -A IP
i=0
for r in "${ROLES[@]}"; do
  i=$((i + 1)); ns=pal-demo-$r; sub=10.232.$i
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$NODE_NS" link add "pd$i" type veth peer name eth0 netns "$ns"
  ip -n "$ns" addr add "$sub.2/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$sub.1"
  ip -n "$NODE_NS" addr add "$sub.1/24" dev "pd$i"
  ip -n "$NODE_NS" link set "pd$i" up
  IP[$r]=$sub.2
done
for r in orders payments inventory; do
  mkdir -p "$work/www-$r" && echo "$r" > "$work/www-$r/index.html"
  ip netns exec "pal-demo-$r" python3 -m http.server 8080 --bind "${IP[$r]}" --directory "$work/www-$r" > "$work/$r.log" 2>&1 &
  pids+=($!)
done
ip netns exec pal-demo-redis redis-server --port 6379 --bind "${IP[redis]}" --save '' --appendonly no --protected-mode no > "$work/redis.log" 2>&1 &
pids+=($!)
sleep 1

http() { ip netns exec "pal-demo-$1" curl -s -m 2 -o /dev/null -w '%{http_code}' "http://${IP[$2]}:8080/" 2>/dev/null || true; }
ping_redis() { ip netns exec "pal-demo-$1" timeout 2 bash -c "exec 3<>/dev/tcp/${IP[redis]}/6379; printf '*1\r\n\$4\r\nPING\r\n' >&3; head -c 7 <&3" 2>/dev/null | tr -d '\r\n' || true; }
traffic() {
  printf '  orders -> payments: %s   orders -> inventory: %s   inventory -> redis: %s   client -> orders: %s\n' \
    "$(http orders payments)" "$(http orders inventory)" "$(ping_redis inventory)" "$(http client orders)"
}

say "Starting a Palisade agent on node-1 of cluster east (eBPF on each workload's veth)"
agent_token=$(as east agent token create --ttl 30m 2>/dev/null)
{
  echo "- {name: orders, namespace: shop, netns: pal-demo-orders, labels: {app: orders}}"
  echo "- {name: payments, namespace: shop, netns: pal-demo-payments, labels: {app: payments}}"
  echo "- {name: inventory, namespace: shop, netns: pal-demo-inventory, labels: {app: inventory}}"
  echo "- {name: redis, namespace: shop, netns: pal-demo-redis, labels: {app: redis}}"
  echo "- {name: client, namespace: outside, netns: pal-demo-client, labels: {app: client}}"
} > "$work/workloads.yaml"
"$BIN" agent --controller "127.0.0.1:$((BASE + 46))" --token "$agent_token" --node node-1 \
  --data-dir "$work/agent" --workloads "$work/workloads.yaml" --host-netns "$NODE_NS" --pin-dir "$PIN_DIR" > "$work/agent.log" 2>&1 &
pids+=($!)
wait_log "$work/agent.log" 'agent ready' 30

say "Discover mode: the shop's normal traffic flows, and east learns it (HTTP 200s and a Redis PONG)"
# learned_all: every one of the shop's four flows is a learned rule.
learned_all() {
  local rules pair
  rules=$(as east rule list --learned 2>/dev/null) || return 1
  for pair in 'orders\.shop +learned\.payments\.shop' 'orders\.shop +learned\.inventory\.shop' \
    'inventory\.shop +learned\.redis\.shop' 'client\.outside +learned\.orders\.shop'; do
    grep -Eq "learned\.$pair" <<<"$rules" || return 1
  done
}
deadline=$((SECONDS + 60))
while :; do
  traffic
  if learned_all; then break; fi
  if [ $SECONDS -ge $deadline ]; then echo "  (not every flow was learned within 60 s)"; break; fi
  sleep 2
done
as east rule list --learned

say "Switching every group to Protect: learned flows still work, anything else is dropped in the kernel"
as east mode set --all protect
sleep 2
traffic
printf '  payments -> orders (never seen before): %s\n' "$(http payments orders)"
sleep 2
say "The blocked connection, reported by the agent"
events=$(as east event list)
head -n 8 <<<"$events"

cat <<MSG

  Primary API:    $(api 1)   (CA certificate: $work/hq-1/ca.crt)
  Admin password: $(cat "$work/admin.pw")   (user admin, on every cluster)
  Try:            PALISADE_SESSION_FILE=$work/hq.session $BIN fed status
                  PALISADE_SESSION_FILE=$work/hq.session $BIN fed history
  Console:        $(api 1)/ui/
  Logs:           $work/*.log

Running. Press Ctrl-C to stop and clean up.
MSG
# The end-to-end test of the demo sets it up, then tears it down at once.
if [ "${PALISADE_DEMO_EXIT:-}" = 1 ]; then exit 0; fi
while true; do
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then say "a process exited unexpectedly; see $work"; exit 1; fi
  done
  sleep 1
done
