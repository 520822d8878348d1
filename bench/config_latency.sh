#!/usr/bin/env bash
# Config-to-traffic benchmark: how long from writing a manifest to the first request served by
# the routing table built from it. Each edit rewrites one Ingress file so that it routes a host
# that answered 404 until then; curl asks for that host in a tight loop until it answers 200.
# A random pause (0-1 s) before each edit spreads the edits over the phases of a 1 s polling
# period.
# Prints p50/p99/max per server: zone-alb, an older build (ALB_BASE, same run) and nginx with a
# reload (`nginx -s reload`) after each edit, for scale.
#
#   bench/config_latency.sh [edits, default 100]
#   ALB_BASE=/path/to/other/zone-alb bench/config_latency.sh   # A/B: that build too
#
# Installs nginx-light and curl with apt-get if missing (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
EDITS=${1:-100}
BACKEND=127.0.62.10:9000
ALB=127.0.62.1
ALB_B=127.0.62.2
NGINX=127.0.62.3

need_commands nginx:nginx-light curl:curl
cargo build --release -q -p zone-alb

setup_workdir

backend_nginx "$W/backend" "$BACKEND"; PIDS+=($!)

# A manifest directory without a default backend (an unrouted host must answer 404), and its
# one Ingress routing `host`.
alb_manifests() { # dir listen-ip
  mkdir -p "$1"
  alb_objects "$2" "$BACKEND" > "$1/site.yaml"
  alb_route "$1" h0.bench.test
}
alb_route() { # dir host
  cat > "$1/route.yaml" <<CONF
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: route}
spec:
  ingressClassName: mzlb
  rules:
  - host: $2
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
CONF
}

nginx_route() { # dir host
  cat > "$1/route.conf" <<CONF
server { listen $NGINX:8080; server_name $2; location / { proxy_pass http://$BACKEND; } }
CONF
}
nginx_edit() { # dir host
  nginx_route "$1" "$2"
  nginx -p "$1" -c "$1/nginx.conf" -s reload 2>/dev/null
}
mkdir -p "$W/nginx"
cat > "$W/nginx/nginx.conf" <<CONF
worker_processes 1;
error_log $W/nginx/error.log;
pid $W/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  server { listen $NGINX:8080 default_server; return 404; }
  include $W/nginx/route.conf;
}
CONF
nginx_route "$W/nginx" h0.bench.test
nginx -p "$W/nginx" -c "$W/nginx/nginx.conf" -g 'daemon off;' & PIDS+=($!)

alb_manifests "$W/alb" "$ALB"
RUST_LOG=warn target/release/zone-alb --workers 1 --manifests "$W/alb" --alb-id alb & PIDS+=($!)
SERVERS=("zone-alb $ALB alb_route $W/alb")
if [ -n "${ALB_BASE:-}" ]; then
  alb_manifests "$W/alb_base" "$ALB_B"
  RUST_LOG=warn "$ALB_BASE" --workers 1 --manifests "$W/alb_base" --alb-id alb & PIDS+=($!)
  SERVERS+=("base $ALB_B alb_route $W/alb_base")
fi
SERVERS+=("nginx $NGINX nginx_edit $W/nginx")

status() { # ip host
  curl -s -o /dev/null -w '%{http_code}' -H "Host: $2" "http://$1:8080/" || true
}
for server in "${SERVERS[@]}"; do
  read -r name ip _ _ <<<"$server"
  for _ in $(seq 1 100); do
    [ "$(status "$ip" h0.bench.test)" = 200 ] && break
    sleep 0.1
  done
  [ "$(status "$ip" h0.bench.test)" = 200 ] || { echo "$name at $ip does not answer" >&2; exit 1; }
done
# An answer from a process left over from elsewhere would be measured instead of ours.
for pid in "${PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "a server exited at start (address in use?)" >&2; exit 1; }
done

now_us() { echo $(( $(date +%s%N) / 1000 )); }

# Makes $EDITS edits; prints each one's write-to-served time in microseconds.
measure() { # ip edit-function dir
  local i host start
  for i in $(seq 1 "$EDITS"); do
    host="h$i.bench.test"
    sleep "0.$(( RANDOM % 10 ))$(( RANDOM % 10 ))"
    start=$(now_us)
    "$2" "$3" "$host"
    until [ "$(status "$1" "$host")" = 200 ]; do
      if [ $(( $(now_us) - start )) -gt 10000000 ]; then
        echo "$host not served after 10 s" >&2
        return 1
      fi
    done
    echo $(( $(now_us) - start ))
  done
}

# p50, p99 and max of microsecond figures on stdin, in milliseconds.
percentiles() {
  sort -n | awk '{ v[NR] = $1 } END {
    p50 = v[int((NR * 50 + 99) / 100)]; p99 = v[int((NR * 99 + 99) / 100)]
    printf "%8.0f %8.0f %8.0f\n", p50 / 1000, p99 / 1000, v[NR] / 1000 }'
}

printf '%-10s %8s %8s %8s   (%s edits, ms from write to first request served)\n' "" p50 p99 max "$EDITS"
for server in "${SERVERS[@]}"; do
  read -r name ip edit dir <<<"$server"
  printf '%-10s ' "$name"
  measure "$ip" "$edit" "$dir" | percentiles
done
