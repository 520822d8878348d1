#!/usr/bin/env bash
# DNS benchmark: mzlb's DNS against NSD and gdnsd serving the same zone, driven by dnsperf in
# the same run with the same queries. Prints per server: QPS, mean/p50/p99 latency, lost
# queries, server CPU time per answered query (from /proc), resident memory, and ratios.
#
#   bench/dns.sh [seconds per run, default 10]
#
# Installs nsd, gdnsd and dnsperf with apt-get if missing (run as root), builds mzlb in release.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
SECONDS_PER_RUN=${1:-10}
LAT_SECONDS=$(( SECONDS_PER_RUN / 2 > 2 ? SECONDS_PER_RUN / 2 : 2 ))
PORT=5300
NSD_IP=127.0.40.1
GDNSD_IP=127.0.40.2
MZLB_IP=127.0.40.3

need_commands nsd:nsd gdnsd:gdnsd dnsperf:dnsperf dig:dnsutils
cargo build --release -q -p mzlb
MZLB=$PWD/target/release/mzlb

setup_workdir

# --- the same zone for everyone: apex and wildcard A, SOA, NS -------------------------------
ZONE="\$ORIGIN bench.test.
\$TTL 5
@ IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 5
@ IN NS ns.bench.test.
@ IN A 127.0.41.1
@ IN A 127.0.41.2
@ IN A 127.0.41.3
* IN A 127.0.41.1
* IN A 127.0.41.2
* IN A 127.0.41.3
"
# apex A, wildcard A, AAAA that is NODATA, a name in no zone (REFUSED)
printf 'bench.test A\nwww.bench.test A\nbench.test AAAA\nelsewhere.example A\n' > "$W/queries"

# --- NSD: one server process, response-rate limiting off ------------------------------------
mkdir -p "$W/nsd"
printf '%s' "$ZONE" > "$W/nsd/bench.test.zone"
cat > "$W/nsd/nsd.conf" <<CONF
server:
  ip-address: $NSD_IP@$PORT
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$W/nsd"
  database: ""
  zonelistfile: "$W/nsd/zone.list"
  xfrdfile: "$W/nsd/xfrd.state"
  xfrdir: "$W/nsd"
  pidfile: "$W/nsd/nsd.pid"
  logfile: "$W/nsd/nsd.log"
  verbosity: 0
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: bench.test
  zonefile: bench.test.zone
CONF
nsd -d -c "$W/nsd/nsd.conf" & PIDS+=($!); NSD_PID=$!

# --- gdnsd: one UDP thread -----------------------------------------------------------------
mkdir -p "$W/gdnsd/zones" /run/gdnsd
printf '%s' "$ZONE" > "$W/gdnsd/zones/bench.test"
cat > "$W/gdnsd/config" <<CONF
options => {
  listen => [ $GDNSD_IP:$PORT ]
  udp_threads => 1
  tcp_threads => 1
}
CONF
gdnsd -c "$W/gdnsd" start > "$W/gdnsd.log" 2>&1 & PIDS+=($!); GDNSD_PID=$!

# --- mzlb: the same answers from objects, one UDP thread like the peers, rate limiting off
# like NSD (dnsperf sends from one address); echo servers stand
# in for the ALBs' /healthz ---------------------------------------------------------------
mkdir -p "$W/mzlb"
{
  printf 'apiVersion: mzlb.io/v1alpha1\nkind: MultiZoneCluster\nmetadata: {name: bench}\nspec: {subdomain: bench.test, ttl: 5}\n'
  for i in 1 2 3; do
    printf -- '---\napiVersion: mzlb.io/v1alpha1\nkind: ZoneALB\nmetadata: {name: alb%s}\nspec: {zone: zone-%s, ip: 127.0.41.%s, port: 8080}\n' "$i" "$i" "$i"
  done
} > "$W/mzlb/bench.yaml"
for i in 1 2 3; do
  "$MZLB" echo --listen "127.0.41.$i:8080" --name "alb$i" 2>/dev/null & PIDS+=($!)
done
MZLB_STATE_DIR="$W/mzlb-state" "$MZLB" serve --manifests "$W/mzlb" \
  --dns-listen "$MZLB_IP:$PORT" --dns-threads 1 --dns-rate-limit 0 --api-listen "$MZLB_IP:0" > "$W/mzlb.log" 2>&1 & PIDS+=($!); MZLB_PID=$!

# Wait (bounded) until each server gives the full answer.
for ip in $NSD_IP $GDNSD_IP $MZLB_IP; do
  for _ in $(seq 1 100); do
    n=$(dig +short +time=1 +tries=1 @"$ip" -p $PORT bench.test A 2>/dev/null | wc -l)
    [ "$n" = 3 ] && break
    sleep 0.1
  done
  [ "$n" = 3 ] || { echo "server on $ip did not answer; logs:" >&2; cat "$W"/*.log "$W"/nsd/nsd.log >&2 || true; exit 1; }
done

HZ=$(getconf CLK_TCK)

declare -A QPS LOST CPU RSS MEAN P50 P99
run() { # name ip pid
  local name=$1 ip=$2 pid=$3 before after out completed
  before=$(ticks "$pid")
  out=$(dnsperf -s "$ip" -p $PORT -d "$W/queries" -l "$SECONDS_PER_RUN" -c 1 -T 1 -q 200 2>&1)
  after=$(ticks "$pid")
  completed=$(awk '/Queries completed:/ {print $3}' <<<"$out")
  QPS[$name]=$(awk '/Queries per second:/ {printf "%.0f", $4}' <<<"$out")
  LOST[$name]=$(awk '/Queries lost:/ {print $3}' <<<"$out")
  MEAN[$name]=$(awk '/Average Latency/ {printf "%.1f", $4 * 1e6}' <<<"$out")
  CPU[$name]=$(awk -v t=$(( after - before )) -v hz="$HZ" -v n="$completed" 'BEGIN {printf "%.2f", n ? t / hz * 1e6 / n : 0}')
  RSS[$name]=$(rss_kib "$pid")
  # Latency percentiles from a verbose run (dnsperf prints each response's latency).
  dnsperf -s "$ip" -p $PORT -d "$W/queries" -l "$LAT_SECONDS" -c 1 -T 1 -q 200 -v 2>/dev/null \
    | awk '$1 == ">" {print $NF * 1e6}' | sort -n > "$W/lat.$name"
  local n; n=$(wc -l < "$W/lat.$name")
  P50[$name]=$(awk -v n="$n" 'NR == int(n * 0.50) + 1 {printf "%.1f", $1}' "$W/lat.$name")
  P99[$name]=$(awk -v n="$n" 'NR == int(n * 0.99) + 1 {printf "%.1f", $1}' "$W/lat.$name")
}

echo "dnsperf: ${SECONDS_PER_RUN}s per server, 1 thread, 200 outstanding; queries: apex A, wildcard A, NODATA AAAA, out-of-zone A"
run nsd $NSD_IP $NSD_PID
run gdnsd $GDNSD_IP $GDNSD_PID
run mzlb $MZLB_IP $MZLB_PID

best_qps=0; best_cpu=0
for s in nsd gdnsd; do
  [ "${QPS[$s]}" -gt "$best_qps" ] && best_qps=${QPS[$s]}
  if [ "$best_cpu" = 0 ] || awk -v a="${CPU[$s]}" -v b="$best_cpu" 'BEGIN {exit !(a < b)}'; then best_cpu=${CPU[$s]}; fi
done
printf '\n%-7s %10s %10s %9s %9s %8s %12s %9s %10s %10s\n' server QPS mean_us p50_us p99_us lost cpu_us/query rss_MiB qps/best cpu/best
for s in nsd gdnsd mzlb; do
  printf '%-7s %10s %10s %9s %9s %8s %12s %9.1f %10.2f %10.2f\n' "$s" "${QPS[$s]}" "${MEAN[$s]}" "${P50[$s]}" "${P99[$s]}" "${LOST[$s]}" "${CPU[$s]}" \
    "$(awk -v k="${RSS[$s]}" 'BEGIN {print k / 1024}')" \
    "$(awk -v a="${QPS[$s]}" -v b="$best_qps" 'BEGIN {print a / b}')" \
    "$(awk -v a="${CPU[$s]}" -v b="$best_cpu" 'BEGIN {print a / b}')"
done
