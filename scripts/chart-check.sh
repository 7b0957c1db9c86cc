#!/usr/bin/env bash
# Checks the Helm chart in deploy/helm/palisade: lints and renders it in its
# small and HA modes (and with declarative federation), compares the output
# with the plain manifests in deploy/manifests, validates it with kubeconform
# against strict schemas, and applies it with a server-side dry run.
#
# When a kube-apiserver binary is cached (scripts/kube-apiserver.sh builds
# one), the script first starts it on loopback with etcd, installs the CRDs
# and reads its /openapi/v2: deploy/schemagen turns that document and the
# CRDs into kubeconform's schema folder (one strict, standalone schema per
# kind and version), so kubeconform runs -strict and without
# -ignore-missing-schemas, offline. The manifests in deploy/testdata/invalid
# must each be rejected, which shows the validation is real. Without the API
# server only the custom resources are validated (their schemas come from
# the CRD files), and the script says so.
#
# helm and kubeconform are built from the Go module proxy at pinned versions
# and cached in $CACHE_DIR/bin (a few minutes, once).
#
# Usage: scripts/chart-check.sh [--update]
#   --update  rewrite deploy/manifests from the chart instead of comparing.
# Exit status: 0 checked, 1 a check failed, 3 a tool could not be installed.
set -euo pipefail

HELM_VERSION=v3.20.2
KUBECONFORM_VERSION=v0.7.0
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
CACHE_DIR=${CACHE_DIR:-/var/cache/palisade-dev}
GO=${GO:-go}
root=$(cd "$(dirname "$0")/.." && pwd)
chart=$root/deploy/helm/palisade
manifests=$root/deploy/manifests
update=false
[ "${1:-}" = --update ] && update=true

bin=$CACHE_DIR/bin
mkdir -p "$bin"
work=$(mktemp -d)
pids=()
# cleanup stops the API server before etcd (it may wait for etcd forever
# otherwise), killing what has not exited within 10 seconds.
cleanup() {
  local i p
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    p=${pids[$i]}
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# tool NAME VERSION MODULE_PATH: the cached binary, installed when missing or
# of another version.
tool() {
  local name=$1 version=$2 pkg=$3 path=$bin/$1-$2
  if [ ! -x "$path" ]; then
    echo "chart-check: installing $name $version into $bin (once; helm takes a few minutes)" >&2
    if ! (cd "$work" && GOBIN="$work/gobin" GOFLAGS=-buildvcs=false "$GO" install "$pkg@$version") >"$work/install-$name.log" 2>&1; then
      echo "chart-check: cannot install $name $version:" >&2
      tail -5 "$work/install-$name.log" >&2
      exit 3
    fi
    mv "$work/gobin/$name" "$path"
  fi
  echo "$path"
}
helm=$(tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm)
kubeconform=$(tool kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform)

# The API server first: its OpenAPI document is where the schemas of the
# built-in kinds come from.
api_ok=false
apiserver=$CACHE_DIR/kube-apiserver-$KUBE_VERSION
start_apiserver() {
  if [ ! -x "$apiserver" ] || ! command -v etcd >/dev/null || ! command -v kubectl >/dev/null || ! command -v openssl >/dev/null; then
    echo "chart-check: no API server ($apiserver, etcd, kubectl or openssl missing; scripts/kube-apiserver.sh builds the API server):"
    echo "chart-check: the built-in kinds are not validated by kubeconform and there is no server-side dry run"
    return 0
  fi
  local etcd_port peer_port api_port token
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  etcd --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" >"$work/etcd.log" 2>&1 &
  pids+=($!)
  openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
  token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "$token,admin,admin,system:masters" >"$work/tokens.csv"
  "$apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" --bind-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$work/certs" --token-auth-file "$work/tokens.csv" --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$work/sa.key" \
    --service-account-signing-key-file "$work/sa.key" --service-cluster-ip-range 10.96.0.0/16 \
    --endpoint-reconciler-type none --disable-admission-plugins ServiceAccount --allow-privileged=true >"$work/apiserver.log" 2>&1 &
  pids+=($!)
  kc=(kubectl --server "https://127.0.0.1:$api_port" --token "$token" --insecure-skip-tls-verify=true)
  for _ in $(seq 1 120); do
    "${kc[@]}" get --raw /readyz >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! "${kc[@]}" get --raw /readyz >/dev/null 2>&1; then
    # A harness problem, not a chart problem: say so and run the rest.
    echo "chart-check: kube-apiserver did not become ready; the built-in kinds are not validated and there is no server-side dry run:"
    tail -5 "$work/apiserver.log"
    return 0
  fi
  "${kc[@]}" create namespace palisade >/dev/null
  "${kc[@]}" apply -f "$chart/crds" >/dev/null
  "${kc[@]}" wait --for condition=established --timeout 30s -f "$chart/crds" >/dev/null
  "${kc[@]}" get --raw /openapi/v2 >"$work/openapi-v2.json"
  api_ok=true
}
start_apiserver

# kubeconform's schemas, offline: built-in kinds from the API server's
# OpenAPI document, custom resources from the CRD files.
schemas=$work/schemas
if ! (cd "$root" && "$GO" build -o "$work/schemagen" ./deploy/schemagen) >"$work/schemagen.log" 2>&1; then
  echo "chart-check: cannot build deploy/schemagen:" >&2; cat "$work/schemagen.log" >&2; exit 1
fi
schemagen_args=(--crds "$chart/crds" --out "$schemas" --kube-version "$KUBE_VERSION")
$api_ok && schemagen_args+=(--openapi "$work/openapi-v2.json")
if ! "$work/schemagen" "${schemagen_args[@]}" >"$work/schemagen.log" 2>&1; then
  echo "chart-check: schemagen failed:" >&2; cat "$work/schemagen.log" >&2; exit 1
fi
kubeconform_run() {
  "$kubeconform" -strict -kubernetes-version "${KUBE_VERSION#v}" \
    -schema-location "$schemas/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json" \
    -schema-location "$schemas/{{.NormalizedKubernetesVersion}}-standalone{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json" "$@"
}

# The modes and their values: small and ha are also written to
# deploy/manifests; primary and remote add the federation container.
modes=(small ha primary remote)
mode_args() {
  case $1 in
    small) echo "--set ha=false" ;;
    ha) echo "--set ha=true" ;;
    primary) echo "--set ha=true --set federation.mode=primary --set federation.primary.addrs={fed.example.net:11443}" ;;
    remote) echo "--set ha=false --set federation.mode=remote --set federation.remote.labels.env=prod" ;;
  esac
}

status=0
for m in "${modes[@]}"; do
  # shellcheck disable=SC2046
  if ! "$helm" lint --strict --kube-version "$KUBE_VERSION" "$chart" $(mode_args "$m") >"$work/lint-$m.log" 2>&1; then
    echo "chart-check: helm lint ($m) failed:" >&2; cat "$work/lint-$m.log" >&2; status=1
  fi
  # The chart's own rendering, with its generated Secrets, for the checks below.
  # shellcheck disable=SC2046
  if ! "$helm" template palisade "$chart" --namespace palisade --kube-version "$KUBE_VERSION" --include-crds $(mode_args "$m") >"$work/$m.chart.yaml" 2>"$work/template-$m.log"; then
    echo "chart-check: helm template ($m) failed:" >&2; cat "$work/template-$m.log" >&2; status=1; continue
  fi
  if [ "$m" = small ] || [ "$m" = ha ]; then
    # The plain manifests name an existing Secret for the admin password
    # instead of carrying a random one: users create it first (deploy/README.md).
    # shellcheck disable=SC2046
    if ! "$helm" template palisade "$chart" --namespace palisade --kube-version "$KUBE_VERSION" --include-crds $(mode_args "$m") \
      --set admin.existingSecret=palisade-admin >"$work/$m.yaml" 2>>"$work/template-$m.log"; then
      echo "chart-check: helm template ($m) failed:" >&2; cat "$work/template-$m.log" >&2; status=1; continue
    fi
    {
      echo "# Palisade, $m mode, rendered from deploy/helm/palisade by scripts/chart-check.sh --update."
      echo "# Install: see deploy/README.md (create the namespace and the two Secrets, then kubectl apply -f $m.yaml)."
      cat "$work/$m.yaml"
    } >"$work/$m.out"
    if $update; then
      mkdir -p "$manifests"
      cp "$work/$m.out" "$manifests/$m.yaml"
      echo "chart-check: wrote deploy/manifests/$m.yaml"
    elif ! diff -u "$manifests/$m.yaml" "$work/$m.out" >"$work/diff-$m" 2>&1; then
      echo "chart-check: deploy/manifests/$m.yaml differs from helm template (run scripts/chart-check.sh --update):" >&2
      head -40 "$work/diff-$m" >&2; status=1
    fi
  fi
  if $api_ok && ! kubeconform_run -summary "$work/$m.chart.yaml" >"$work/kubeconform-$m.log" 2>&1; then
    echo "chart-check: kubeconform ($m) failed:" >&2; cat "$work/kubeconform-$m.log" >&2; status=1
  fi
done

# The policy-as-code examples of policy/code against the CRDs' schemas.
policy_examples=()
for f in "$root/policy/code/testdata/policy.yaml" "$root/policy/code/testdata/policy.export.yaml"; do
  [ -f "$f" ] && policy_examples+=("$f")
done
if [ ${#policy_examples[@]} -gt 0 ] && ! kubeconform_run -summary "${policy_examples[@]}" >"$work/kubeconform-policy.log" 2>&1; then
  echo "chart-check: kubeconform of the policy examples failed:" >&2; cat "$work/kubeconform-policy.log" >&2; status=1
fi

# The negative check: every deliberately invalid manifest is rejected, for
# a schema reason (not, say, an unreadable file).
invalid=0
for f in "$root"/deploy/testdata/invalid/*.yaml; do
  case $(basename "$f") in custom-resource.yaml | unknown-kind.yaml) ;; *) $api_ok || continue ;; esac
  invalid=$((invalid + 1))
  if kubeconform_run "$f" >"$work/invalid.log" 2>&1; then
    echo "chart-check: kubeconform accepted ${f#"$root"/}, which is invalid (the schemas validate nothing?)" >&2; status=1
  elif ! grep -qE 'is invalid|could not find schema' "$work/invalid.log"; then
    echo "chart-check: kubeconform rejected ${f#"$root"/} for another reason than its schema:" >&2; cat "$work/invalid.log" >&2; status=1
  fi
done
[ $status = 0 ] || exit $status
if ! $api_ok; then
  echo "chart-check: lint, template, manifests, kubeconform of the custom resources and $invalid invalid manifests rejected; no API server, so no kubeconform of the built-in kinds and no server-side dry run"
  exit 0
fi

# Server-side dry run of every mode and of the policy examples.
for m in "${modes[@]}"; do
  if ! "${kc[@]}" apply --dry-run=server -f "$work/$m.chart.yaml" >"$work/dry-$m.log" 2>&1; then
    echo "chart-check: server-side dry run ($m) failed:" >&2; cat "$work/dry-$m.log" >&2; status=1
  fi
done
for f in "${policy_examples[@]}"; do
  for ns in $(sed -n 's/^  namespace: *\([a-z0-9-]*\)$/\1/p' "$f" | sort -u); do
    "${kc[@]}" get namespace "$ns" >/dev/null 2>&1 || "${kc[@]}" create namespace "$ns" >/dev/null
  done
  if ! "${kc[@]}" apply --dry-run=server -f "$f" >"$work/dry-policy.log" 2>&1; then
    echo "chart-check: server-side dry run of ${f#"$root"/} against the CRDs failed:" >&2; cat "$work/dry-policy.log" >&2; status=1
  fi
done
[ $status = 0 ] && echo "chart-check: lint, template, manifests, kubeconform -strict with $(find "$schemas" -name '*.json' | wc -l) schemas ($invalid invalid manifests rejected) and server-side dry run ($KUBE_VERSION) passed"
exit $status
