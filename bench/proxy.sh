#!/usr/bin/env bash
# Proxy benchmark: zone-alb against nginx and HAProxy as equivalent reverse proxies (one
# worker each, upstream keep-alive, the same forwarding headers) in front of one fast backend,
# driven by wrk in the same run: 64 keep-alive connections, then a new connection per request.
# Prints per proxy: requests/s, p50/p99 latency, proxy CPU time per request (from /proc),
# resident memory, new upstream connections per 1000 requests (counted by the backend), and
# ratios to nginx; then the keep-alive run again with one worker per core for each proxy;
# then `mzlb up`'s own setup: one worker per core, two `mzlb echo` backends behind one
# Ingress host, access logs on (to a file, as each proxy writes them by default), wrk with
# two threads; then resident memory with 10 000 idle keep-alive client connections.
#
#   bench/proxy.sh [seconds per run, default 10]
#   ALB_BASE=/path/to/other/zone-alb bench/proxy.sh   # A/B: that build too, in the same run
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
# The same three again with one worker per core (zone-alb's default).
NGINX_ALL=127.0.60.4
HAPROXY_ALL=127.0.60.5
ALB_ALL=127.0.60.6
# Another zone-alb build (ALB_BASE), one worker, measured beside this one for A/B figures.
ALB_B=127.0.60.7
# mzlb up's setup: one worker per core, two echo backends, access logs on.
NGINX_UP=127.0.60.8
HAPROXY_UP=127.0.60.9
ALB_UP=127.0.60.11
ALB_B_UP=127.0.60.12
ECHOES=(127.0.60.21:9000 127.0.60.22:9000)
CORES=$(nproc)

need_commands nginx:nginx-light haproxy:haproxy wrk:wrk curl:curl python3:python3
# Every proxy, and the client holding the idle connections, needs a descriptor per connection;
# fewer idle connections are held when the descriptor limit cannot be raised far enough.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
IDLE_CONNS=$(( NOFILE - 2000 < 10000 ? NOFILE - 2000 : 10000 ))
cargo build --release -q -p zone-alb -p mzlb

setup_workdir

# --- the backend: nginx answering a small body --------------------------------------------
mkdir -p "$W/nginx"
backend_nginx "$W/backend" "$BACKEND"; PIDS+=($!)

# --- nginx as the reverse proxy -------------------------------------------------------------
nginx_proxy() { # dir listen-ip workers [access-log upstream...]
  mkdir -p "$1"
  local log=${4:-off} servers=$BACKEND
  if [ $# -gt 4 ]; then servers=$(printf '%s; server ' "${@:5}"); servers=${servers%; server }; fi
  cat > "$1/nginx.conf" <<CONF
worker_processes $3;
worker_rlimit_nofile $NOFILE;
error_log $1/error.log;
pid $1/nginx.pid;
events { worker_connections 15000; }
http {
  access_log $log;
  keepalive_requests 1000000;
  upstream app { server $servers; keepalive 64; }
  server {
    listen $2:8080;
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
  nginx -p "$1" -c "$1/nginx.conf" -g 'daemon off;' & PIDS+=($!)
}
nginx_proxy "$W/nginx" "$NGINX" 1; NGINX_PID=$!
nginx_proxy "$W/nginx_all" "$NGINX_ALL" "$CORES"; NGINX_ALL_PID=$!
nginx_proxy "$W/nginx_up" "$NGINX_UP" "$CORES" "$W/nginx_up/access.log" "${ECHOES[@]}"; NGINX_UP_PID=$!

# --- HAProxy ------------------------------------------------------------------------------
haproxy_proxy() { # config-file listen-ip threads [upstream...]: with upstreams, logging to stdout
  local servers="  server s1 $BACKEND" global_log="" log="" i=0 up
  if [ $# -gt 3 ]; then
    servers=""
    for up in "${@:4}"; do i=$((i + 1)); servers+="  server s$i $up"$'\n'; done
    global_log="  log stdout format raw local0 info"
    log=$'  log global\n  option httplog'
  fi
  cat > "$1" <<CONF
global
$global_log
  nbthread $3
  ulimit-n $NOFILE
  no strict-limits
  maxconn $(( IDLE_CONNS + 100 ))
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
$log
frontend fe
  bind $2:8080
  option forwardfor
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Request-ID %[uuid]
  default_backend app
backend app
  balance roundrobin
$servers
CONF
  haproxy -f "$1" -db > "${1%.cfg}.log" & PIDS+=($!)
}
haproxy_proxy "$W/haproxy.cfg" "$HAPROXY" 1; HAPROXY_PID=$!
haproxy_proxy "$W/haproxy_all.cfg" "$HAPROXY_ALL" "$CORES"; HAPROXY_ALL_PID=$!
haproxy_proxy "$W/haproxy_up.cfg" "$HAPROXY_UP" "$CORES" "${ECHOES[@]}"; HAPROXY_UP_PID=$!

# --- zone-alb -------------------------------------------------------------------------------
alb_site "$W/alb" "$ALB" "$BACKEND"
alb_site "$W/alb_all" "$ALB_ALL" "$BACKEND"
# One worker thread, as nginx and HAProxy get one worker; then the default, one per core.
RUST_LOG=warn target/release/zone-alb --workers 1 --manifests "$W/alb" --alb-id alb & PIDS+=($!); ALB_PID=$!
RUST_LOG=warn target/release/zone-alb --manifests "$W/alb_all" --alb-id alb & PIDS+=($!); ALB_ALL_PID=$!
URLS=("http://$BACKEND/" http://{$NGINX,$HAPROXY,$ALB,$NGINX_ALL,$HAPROXY_ALL,$ALB_ALL}:8080/)
if [ -n "${ALB_BASE:-}" ]; then
  alb_site "$W/alb_base" "$ALB_B" "$BACKEND"
  RUST_LOG=warn "$ALB_BASE" --workers 1 --manifests "$W/alb_base" --alb-id alb & PIDS+=($!); ALB_B_PID=$!
  URLS+=("http://$ALB_B:8080/")
fi

# mzlb up's setup: the demo's echo backends, one Ingress host over both, access logs on.
for i in "${!ECHOES[@]}"; do
  target/release/mzlb echo --listen "${ECHOES[$i]}" --name "echo-$i" >/dev/null 2>&1 & PIDS+=($!)
done
alb_up() { # dir listen-ip binary
  mkdir -p "$1"
  {
    alb_objects "$2" "${ECHOES[@]}"
    cat <<CONF
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: mzlb
  rules: [{host: demo.mzlb.test, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}]}}]
CONF
  } > "$1/app.yaml"
  # As `mzlb up` runs it: one worker per core, access lines (RUST_LOG's default) to a file.
  RUST_LOG=info "$3" --manifests "$1" --alb-id alb 2> "$1/alb.log" & PIDS+=($!)
}
alb_up "$W/alb_up" "$ALB_UP" target/release/zone-alb; ALB_UP_PID=$!
UP_URLS=("http://$NGINX_UP:8080/" "http://$HAPROXY_UP:8080/" "http://$ALB_UP:8080/")
if [ -n "${ALB_BASE:-}" ]; then
  alb_up "$W/alb_up_base" "$ALB_B_UP" "$ALB_BASE"; ALB_B_UP_PID=$!
  UP_URLS+=("http://$ALB_B_UP:8080/")
fi
# Every site answers the up row's host (the others serve any host).
for url in "${URLS[@]}" "${UP_URLS[@]}"; do
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null -H 'Host: demo.mzlb.test' "$url" && break
    sleep 0.1
  done
  curl -sf -o /dev/null -H 'Host: demo.mzlb.test' "$url" || { echo "$url does not answer" >&2; cat "$W"/*/error.log >&2 || true; exit 1; }
done
# An answer from a process left over from elsewhere would be measured against the wrong PID.
for pid in "${PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "a server exited at start (address in use?)" >&2; exit 1; }
done

HZ=$(getconf CLK_TCK)
to_us() { # wrk latency like 1.23ms / 456.00us / 1.2s → microseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n }'
}

# Connections the backend has accepted so far (nginx stub_status; counts its own request too).
accepts() { curl -sf "http://$BACKEND/status" | awk 'NR == 3 {print $1}'; }

declare -A RPS P50 P99 CPU MEM UPC
run() { # name url pid [extra wrk args]
  local name=$1 url=$2 pid=$3; shift 3
  local before after out requests acc_before acc_after
  acc_before=$(accepts)
  before=$(ticks "$pid")
  out=$(wrk -t1 -c64 -d"${SECS}s" --latency "$@" "$url")
  after=$(ticks "$pid")
  acc_after=$(accepts)
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  UPC[$name]=$(awk -v c=$(( acc_after - acc_before - 1 )) -v n="$requests" 'BEGIN {printf "%.2f", n ? c * 1000 / n : 0}')
  RPS[$name]=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  P50[$name]=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  P99[$name]=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  CPU[$name]=$(awk -v t=$(( after - before )) -v hz="$HZ" -v n="$requests" 'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}')
  MEM[$name]=$(awk -v k="$(rss_kib "$pid")" 'BEGIN {printf "%.1f", k / 1024}')
}

report() { # title suffix
  local s=$2
  printf '\n%s\n%-9s %10s %9s %9s %13s %8s %11s %9s %9s\n' "$1" proxy req/s p50_us p99_us cpu_us/req rss_MiB up_conn/1k \
    rps/nginx cpu/nginx
  for p in backend nginx haproxy zone-alb base; do
    local k="$p$s"
    [ -n "${RPS[$k]:-}" ] || continue
    local cpu="${CPU[$k]}" mem="${MEM[$k]}" upc="${UPC[$k]}" ratio_cpu="-"
    if [ "$p" = backend ]; then
      cpu="-"; mem="-"; upc="-"
    else
      ratio_cpu=$(awk -v a="${CPU[$k]}" -v b="${CPU[nginx$s]}" 'BEGIN {printf "%.2f", a / b}')
    fi
    printf '%-9s %10s %9s %9s %13s %8s %11s %9.2f %9s\n' "$p" "${RPS[$k]}" "${P50[$k]}" "${P99[$k]}" "$cpu" "$mem" "$upc" \
      "$(awk -v a="${RPS[$k]}" -v b="${RPS[nginx$s]}" 'BEGIN {print a / b}')" "$ratio_cpu"
  done
}

BACKEND_PID=${PIDS[0]}
echo "wrk: 1 thread, 64 connections, ${SECS}s per run; backend: nginx returning a 23-byte body"
run backend "http://$BACKEND/" "$BACKEND_PID"
run nginx "http://$NGINX:8080/" "$NGINX_PID"
run haproxy "http://$HAPROXY:8080/" "$HAPROXY_PID"
run zone-alb "http://$ALB:8080/" "$ALB_PID"
[ -z "${ALB_BASE:-}" ] || run base "http://$ALB_B:8080/" "$ALB_B_PID"
report "keep-alive (64 connections)" ""
run nginx_new "http://$NGINX:8080/" "$NGINX_PID" -H "Connection: close"
run haproxy_new "http://$HAPROXY:8080/" "$HAPROXY_PID" -H "Connection: close"
run zone-alb_new "http://$ALB:8080/" "$ALB_PID" -H "Connection: close"
[ -z "${ALB_BASE:-}" ] || run base_new "http://$ALB_B:8080/" "$ALB_B_PID" -H "Connection: close"
report "new connection per request" "_new"
run nginx_all "http://$NGINX_ALL:8080/" "$NGINX_ALL_PID"
run haproxy_all "http://$HAPROXY_ALL:8080/" "$HAPROXY_ALL_PID"
run zone-alb_all "http://$ALB_ALL:8080/" "$ALB_ALL_PID"
report "keep-alive, one worker per core ($CORES) for each proxy" "_all"
up_run() { # name url pid: wrk with two threads, as mzlb up's README walkthrough would be loaded
  run "$@" -t2 -H 'Host: demo.mzlb.test'
  UPC[$1]="-" # the echo backends count no connections
}
up_run nginx_up "http://$NGINX_UP:8080/" "$NGINX_UP_PID"
up_run haproxy_up "http://$HAPROXY_UP:8080/" "$HAPROXY_UP_PID"
up_run zone-alb_up "http://$ALB_UP:8080/" "$ALB_UP_PID"
[ -z "${ALB_BASE:-}" ] || up_run base_up "http://$ALB_B_UP:8080/" "$ALB_B_UP_PID"
report "mzlb up's setup: one worker per core ($CORES), two mzlb echo backends, access logs on, wrk -t2 -c64" "_up"

# Resident memory with many idle keep-alive client connections: each made one request and then
# sits idle, as browsers' connections do between page loads.
idle() { # name addr pid
  local name=$1 addr=$2 pid=$3 base held
  base=$(rss_kib "$pid")
  coproc HOLD { python3 bench/idle_conns.py "$addr" "$IDLE_CONNS"; }
  # shellcheck disable=SC2153 # set by coproc
  local hold_pid=$HOLD_PID line=""
  read -r -t 120 line <&"${HOLD[0]}" || true
  if [[ $line != open* ]]; then
    echo "$name: could not open $IDLE_CONNS connections" >&2
    kill "$hold_pid" 2>/dev/null || true
    return
  fi
  held=$(rss_kib "$pid")
  echo close >&"${HOLD[1]}"
  wait "$hold_pid" || true
  printf '%-9s %12.1f %14.1f %12.1f\n' "$name" "$(awk -v k="$base" 'BEGIN {print k / 1024}')" \
    "$(awk -v k="$held" 'BEGIN {print k / 1024}')" "$(awk -v a="$held" -v b="$base" -v n="$IDLE_CONNS" 'BEGIN {print (a - b) / n}')"
}
printf '\n%s idle keep-alive client connections\n%-9s %12s %14s %12s\n' "$IDLE_CONNS" proxy rss_MiB_before rss_MiB_held KiB_per_conn
idle nginx "$NGINX:8080" "$NGINX_PID"
idle haproxy "$HAPROXY:8080" "$HAPROXY_PID"
idle zone-alb "$ALB:8080" "$ALB_PID"
