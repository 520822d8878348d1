#!/usr/bin/env bash
# Config-to-traffic on a cluster: from the API server accepting a new Ingress to the first
# request zone-alb serves with it (watch delay, debounce, snapshot, compile, swap). The API
# server is the fake one from tests/, run as a program; each edit POSTs an Ingress for a new
# host, and curl asks for that host in a tight loop until it answers 200.
#
#   bench/config_latency_cluster.sh [edits, default 100]
#   ALB_BIN=/path/to/other/zone-alb bench/config_latency_cluster.sh   # another build
#
# Installs nginx-light and curl with apt-get if missing (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
EDITS=${1:-100}
ALB=127.0.64.1
BACKEND=127.0.64.10:9000

need_commands nginx:nginx-light curl:curl
cargo build --release -q -p zone-alb -p tests --bin zone-alb --bin fakeapi
BIN=$PWD/target/release
ALB_BIN=${ALB_BIN:-$BIN/zone-alb}
setup_workdir

backend_nginx "$W/backend" "$BACKEND"; PIDS+=($!)
alb_objects "$ALB" "$BACKEND" > "$W/site.yaml"
"$BIN/fakeapi" 127.0.64.70:0 "$W/kubeconfig" "$W/site.yaml" > "$W/api.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do grep -q ready "$W/api.log" && break; sleep 0.1; done
API=$(sed -n 's/.*server: "\(http[^"]*\)".*/\1/p' "$W/kubeconfig")
POD_NAME=alb-0 POD_NAMESPACE=default "$ALB_BIN" --alb-id alb --kubeconfig "$W/kubeconfig" \
  --listen "$ALB:8080" 2> "$W/alb.log" & PIDS+=($!)
for _ in $(seq 200); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: albhealth.bench.test' "http://$ALB:8080/")" = 200 ] && break
  sleep 0.1
done

: > "$W/lat"
for i in $(seq 1 "$EDITS"); do
  sleep "0.$(( RANDOM % 10 ))"
  body='{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"e'$i'","namespace":"default"},"spec":{"ingressClassName":"mzlb","rules":[{"host":"h'$i'.bench.test","http":{"paths":[{"path":"/","pathType":"Prefix","backend":{"service":{"name":"app","port":{"number":80}}}}]}}]}}'
  curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d "$body" \
    "$API/apis/networking.k8s.io/v1/namespaces/default/ingresses"
  t0=$(now_ms)   # accepted by the API server
  deadline=$(( t0 + 10000 ))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: h$i.bench.test" "http://$ALB:8080/")" = 200 ]; do
    [ "$(now_ms)" -gt "$deadline" ] && { echo timeout >> "$W/lat"; continue 2; }
  done
  echo $(( $(now_ms) - t0 )) >> "$W/lat"
  printf '.' >&2
done
echo >&2
echo "API server accepts an Ingress → first request served by it, $EDITS edits: p50 $(pct "$W/lat" 50) ms, p99 $(pct "$W/lat" 99) ms, max $(pct "$W/lat" 100) ms"
