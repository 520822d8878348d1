#!/usr/bin/env bash
# Proxy benchmark: zone-alb against nginx and HAProxy as equivalent reverse proxies (one
# worker each, upstream keep-alive, the same forwarding headers) in front of one fast backend,
# driven by wrk in the same run: 64 keep-alive connections, then a new connection per request.
# Prints per proxy: requests/s, p50/p99 latency, proxy CPU time per request (from /proc),
# resident memory, and ratios to nginx.
#
#   bench/proxy.sh [seconds per run, default 10]
#
# Installs nginx-light, haproxy and wrk with apt-get if missing (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
SECS=${1:-10}
BACKEND=127.0.60.10:9000
NGINX=127.0.60.1
HAPROXY=127.0.60.2
ALB=127.0.60.3

need_commands nginx:nginx-light haproxy:haproxy wrk:wrk curl:curl
cargo build --release -q -p zone-alb

setup_workdir

# --- the backend: nginx answering a small body --------------------------------------------
mkdir -p "$W/backend" "$W/nginx"
cat > "$W/backend/nginx.conf" <<CONF
worker_processes 1;
error_log $W/backend/error.log;
pid $W/backend/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen $BACKEND; location / { return 200 "hello from the backend\n"; } }
}
CONF
nginx -p "$W/backend" -c "$W/backend/nginx.conf" -g 'daemon off;' & PIDS+=($!)

# --- nginx as the reverse proxy -------------------------------------------------------------
cat > "$W/nginx/nginx.conf" <<CONF
worker_processes 1;
error_log $W/nginx/error.log;
pid $W/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream app { server $BACKEND; keepalive 64; }
  server {
    listen $NGINX:8080;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header X-Request-ID \$request_id;
    }
  }
}
CONF
nginx -p "$W/nginx" -c "$W/nginx/nginx.conf" -g 'daemon off;' & PIDS+=($!); NGINX_PID=$!

# --- HAProxy, one thread ------------------------------------------------------------------
cat > "$W/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind $HAPROXY:8080
  option forwardfor
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Request-ID %[uuid]
  default_backend app
backend app
  server s1 $BACKEND
CONF
haproxy -f "$W/haproxy.cfg" -db & PIDS+=($!); HAPROXY_PID=$!

# --- zone-alb -------------------------------------------------------------------------------
mkdir -p "$W/alb"
cat > "$W/alb/app.yaml" <<CONF
apiVersion: mzlb.io/v1alpha1
kind: MultiZoneCluster
metadata: {name: bench}
spec: {subdomain: bench.test}
---
apiVersion: mzlb.io/v1alpha1
kind: ZoneALB
metadata: {name: alb}
spec: {zone: z, ip: $ALB, port: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: app}
spec: {ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: app-1, labels: {kubernetes.io/service-name: app}}
addressType: IPv4
ports: [{port: ${BACKEND##*:}}]
endpoints: [{addresses: [${BACKEND%%:*}]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: app}
spec: {ingressClassName: mzlb, defaultBackend: {service: {name: app, port: {number: 80}}}}
CONF
# One worker thread, as nginx and HAProxy get one worker.
RUST_LOG=warn target/release/zone-alb --workers 1 --manifests "$W/alb" --alb-id alb & PIDS+=($!); ALB_PID=$!

for url in "http://$BACKEND/" "http://$NGINX:8080/" "http://$HAPROXY:8080/" "http://$ALB:8080/"; do
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "$url" && break
    sleep 0.1
  done
  curl -sf -o /dev/null "$url" || { echo "$url does not answer" >&2; cat "$W"/*/error.log >&2 || true; exit 1; }
done

HZ=$(getconf CLK_TCK)
to_us() { # wrk latency like 1.23ms / 456.00us / 1.2s → microseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n }'
}

declare -A RPS P50 P99 CPU MEM
run() { # name url pid [extra wrk args]
  local name=$1 url=$2 pid=$3; shift 3
  local before after out requests
  before=$(ticks "$pid")
  out=$(wrk -t1 -c64 -d"${SECS}s" --latency "$@" "$url")
  after=$(ticks "$pid")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  RPS[$name]=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  P50[$name]=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  P99[$name]=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  CPU[$name]=$(awk -v t=$(( after - before )) -v hz="$HZ" -v n="$requests" 'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}')
  MEM[$name]=$(awk -v k="$(rss_kib "$pid")" 'BEGIN {printf "%.1f", k / 1024}')
}

report() { # title suffix
  local s=$2
  printf '\n%s\n%-9s %10s %9s %9s %13s %8s %9s %9s\n' "$1" proxy req/s p50_us p99_us cpu_us/req rss_MiB rps/nginx cpu/nginx
  for p in backend nginx haproxy zone-alb; do
    local k="$p$s"
    [ -n "${RPS[$k]:-}" ] || continue
    local cpu="${CPU[$k]}" mem="${MEM[$k]}" ratio_cpu="-"
    if [ "$p" = backend ]; then cpu="-"; mem="-"; else ratio_cpu=$(awk -v a="${CPU[$k]}" -v b="${CPU[nginx$s]}" 'BEGIN {printf "%.2f", a / b}'); fi
    printf '%-9s %10s %9s %9s %13s %8s %9.2f %9s\n' "$p" "${RPS[$k]}" "${P50[$k]}" "${P99[$k]}" "$cpu" "$mem" \
      "$(awk -v a="${RPS[$k]}" -v b="${RPS[nginx$s]}" 'BEGIN {print a / b}')" "$ratio_cpu"
  done
}

BACKEND_PID=${PIDS[0]}
echo "wrk: 1 thread, 64 connections, ${SECS}s per run; backend: nginx returning a 23-byte body"
run backend "http://$BACKEND/" "$BACKEND_PID"
run nginx "http://$NGINX:8080/" "$NGINX_PID"
run haproxy "http://$HAPROXY:8080/" "$HAPROXY_PID"
run zone-alb "http://$ALB:8080/" "$ALB_PID"
report "keep-alive (64 connections)" ""
run nginx_new "http://$NGINX:8080/" "$NGINX_PID" -H "Connection: close"
run haproxy_new "http://$HAPROXY:8080/" "$HAPROXY_PID" -H "Connection: close"
run zone-alb_new "http://$ALB:8080/" "$ALB_PID" -H "Connection: close"
report "new connection per request" "_new"
