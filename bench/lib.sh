# shellcheck shell=bash
# Helpers shared by the benchmark scripts (sourced, not run).

# A process and all its descendants (NSD's and nginx's workers are their children).
tree() {
  local p
  echo "$1"
  for p in $(pgrep -P "$1" || true); do tree "$p"; done
}

# CPU ticks (user + system, including reaped children) of a process tree. Fields are counted
# after "pid (comm) ", since comm may contain spaces ("nsd: main").
ticks() {
  local total=0 p
  for p in $(tree "$1"); do
    [ -r "/proc/$p/stat" ] || continue
    total=$(( total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13 + $14 + $15}') ))
  done
  echo "$total"
}

# Resident memory of a process tree, in KiB.
rss_kib() {
  local total=0 p
  for p in $(tree "$1"); do
    [ -r "/proc/$p/status" ] || continue
    total=$(( total + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status") ))
  done
  echo "$total"
}

# Milliseconds since the epoch.
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# pct FILE P → the value at percentile P (nearest rank) of the numbers in FILE, one a line, or
# "timeout" if any line says so.
pct() {
  if grep -q timeout "$1"; then echo timeout; return; fi
  sort -n "$1" | awk -v p="$2" '{v[NR] = $1} END {r = int(NR * p / 100); if (r < NR * p / 100) r++; if (r < 1) r = 1; print v[r]}'
}

# Installs the Debian packages that provide the named commands ("command:package ...").
need_commands() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# A scratch directory in $W and a list of started processes in PIDS, both cleaned up on exit.
# A script may define `extra_cleanup` for processes it tracks elsewhere.
setup_workdir() {
  W=$(mktemp -d)
  PIDS=()
  trap cleanup EXIT
}

cleanup() {
  local p
  if declare -F extra_cleanup >/dev/null; then extra_cleanup; fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}

# The objects every benchmark site starts from, printed: one cluster, one ZoneALB on
# <listen-ip>:8080, and the Service `app` in front of <backend ip:port> (more backends: more
# endpoints, all on the first one's port).
alb_objects() { # listen-ip backend...
  local endpoints="" backend
  for backend in "${@:2}"; do endpoints+="${endpoints:+, }{addresses: [${backend%%:*}]}"; done
  cat <<CONF
apiVersion: mzlb.io/v1alpha1
kind: MultiZoneCluster
metadata: {name: bench}
spec: {subdomain: bench.test}
---
apiVersion: mzlb.io/v1alpha1
kind: ZoneALB
metadata: {name: alb}
spec: {zone: z, ip: $1, port: 8080}
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
ports: [{port: ${2##*:}}]
endpoints: [$endpoints]
CONF
}

# The failover benchmarks' cluster, printed: app.bench.test (TTL 1 s, probes every 200 ms,
# timeout 150 ms, rise 2, fall 3) and one ZoneALB per IP given, alb1 in zone-1 and so on.
failover_cluster() { # alb-ip...
  local i=0 ip
  printf 'apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: app}\n'
  printf 'spec: {subdomain: app.bench.test, ttl: 1, drainSeconds: 3, health: {intervalMs: 200, timeoutMs: 150, rise: 2, fall: 3}}\n'
  for ip in "$@"; do
    i=$((i + 1))
    printf -- '---\napiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: alb%s}\nspec: {zone: zone-%s, ip: %s, port: 8080}\n' "$i" "$i" "$ip"
  done
}

# A zone-alb manifest directory: those objects, and an Ingress whose default backend is `app`.
alb_site() { # dir listen-ip backend
  mkdir -p "$1"
  {
    alb_objects "$2" "$3"
    cat <<CONF
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: app}
spec: {ingressClassName: mzlb, defaultBackend: {service: {name: app, port: {number: 80}}}}
CONF
  } > "$1/app.yaml"
}

# The benchmarks' backend: one nginx worker answering a 23-byte body at <ip:port>, with
# stub_status on /status (the count of connections it accepted). Started in the background.
backend_nginx() { # dir listen
  mkdir -p "$1"
  cat > "$1/nginx.conf" <<CONF
worker_processes 1;
error_log $1/error.log;
pid $1/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen $2;
    location / { return 200 "hello from the backend\n"; }
    location = /status { stub_status; }
  }
}
CONF
  nginx -p "$1" -c "$1/nginx.conf" -g 'daemon off;' &
}
