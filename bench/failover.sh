#!/usr/bin/env bash
# Failover benchmark: how fast a zone leaves and re-enters DNS, for mzlb and for gdnsd
# (multifo + http_status monitor at its fastest settings) watching the same ALBs, polled on
# the same kill events; plus mzlb's planned disables under a client loop that honours the TTL.
#
#   bench/failover.sh [trials, default 20]
#
# Installs gdnsd, dnsutils and curl with apt-get if missing (run as root); builds in release.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
TRIALS=${1:-20}
PORT=5300
MZLB_DNS=127.0.50.53
GDNSD_DNS=127.0.50.54
ALBS=(127.0.50.1 127.0.50.2 127.0.50.3)
VICTIM=${ALBS[1]}

need_commands gdnsd:gdnsd dig:dnsutils curl:curl
cargo build --release -q -p mzlb -p zone-alb
BIN=$PWD/target/release

extra_cleanup() {
  if [ -n "${ALB2_PID:-}" ]; then kill "$ALB2_PID" 2>/dev/null || true; fi
}
setup_workdir

# --- mzlb: three zone ALBs in front of three echo backends --------------------------------
mkdir -p "$W/m"
{
  failover_cluster "${ALBS[@]}"
  printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{name: http, port: 80}]}\n'
  printf -- '---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, labels: {kubernetes.io/service-name: web}}\n'
  printf 'addressType: IPv4\nports: [{name: http, port: 9080}]\nendpoints:\n'
  for i in 1 2 3; do printf -- '- {addresses: [127.0.51.%s]}\n' "$i"; done
  printf -- '---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\n'
  printf 'spec: {ingressClassName: mzlb, defaultBackend: {service: {name: web, port: {name: http}}}}\n'
} > "$W/m/app.yaml"
for i in 1 2 3; do
  "$BIN/mzlb" echo --listen "127.0.51.$i:9080" --name "web-$i" 2>/dev/null & PIDS+=($!)
done
start_alb() { "$BIN/zone-alb" --manifests "$W/m" --alb-id "alb$1" 2>>"$W/alb$1.log" & }
start_alb 1; PIDS+=($!)
start_alb 3; PIDS+=($!)
start_alb 2; ALB2_PID=$!
MZLB_STATE_DIR="$W/state" "$BIN/mzlb" serve --manifests "$W/m" --dns-listen "$MZLB_DNS:$PORT" \
  --api-listen "$MZLB_DNS:0" > "$W/mzlb.log" 2>&1 & PIDS+=($!)

# --- gdnsd probing the same three ALBs as mzlb does (Host: albhealth.<subdomain>) ---------
mkdir -p "$W/g/zones" /run/gdnsd
cat > "$W/g/config" <<CONF
options => { listen => [ $GDNSD_DNS:$PORT ], udp_threads => 1, tcp_threads => 1 }
service_types => {
  alb_http => { plugin => http_status, port => 8080, url_path => "/healthz", vhost => "albhealth.app.bench.test", interval => 2, timeout => 1, up_thresh => 1, ok_thresh => 1, down_thresh => 1 }
}
plugins => {
  multifo => {
    albs => { service_types => alb_http, alb1 => ${ALBS[0]}, alb2 => ${ALBS[1]}, alb3 => ${ALBS[2]} }
  }
}
CONF
# shellcheck disable=SC2016 # $TTL is zone-file syntax, not a shell variable
printf '$TTL 5\n@ SOA ns hostmaster 1 3600 600 86400 5\n@ NS ns\nns A %s\napp 5 DYNA multifo!albs\n' "$GDNSD_DNS" > "$W/g/zones/bench.test"
gdnsd -c "$W/g" start > "$W/gdnsd.log" 2>&1 & PIDS+=($!)

# answers SERVER NAME → whether VICTIM is in the A answer (1/0)
has_victim() {
  dig +short +time=1 +tries=1 @"$1" -p $PORT "$2" A 2>/dev/null | grep -qx "$VICTIM" && echo 1 || echo 0
}
# until SERVER NAME WANT START → ms from START until the answer has (1) or lacks (0) VICTIM
until_state() {
  local deadline=$(( $4 + 30000 ))
  while :; do
    [ "$(has_victim "$1" "$2")" = "$3" ] && { echo $(( $(now_ms) - $4 )); return; }
    [ "$(now_ms)" -gt "$deadline" ] && { echo timeout; return; }
  done
}
for s in "$MZLB_DNS app.bench.test" "$GDNSD_DNS app.bench.test"; do
  # shellcheck disable=SC2086
  [ "$(until_state $s 1 "$(now_ms)")" != timeout ] || { echo "no answer from ${s%% *}" >&2; cat "$W"/*.log >&2; exit 1; }
done

# --- kill → gone, restore → back, both servers on the same events ---------------------------
echo "failover: $TRIALS trials; mzlb probes every 200 ms (timeout 150 ms, fall 3, rise 2); gdnsd every 2 s (timeout 1 s, thresholds 1)"
: > "$W/kill.mzlb"; : > "$W/kill.gdnsd"; : > "$W/back.mzlb"; : > "$W/back.gdnsd"
for _ in $(seq 1 "$TRIALS"); do
  sleep "0.$(( RANDOM % 10 ))"   # spread kills over the monitors' intervals
  t0=$(now_ms); kill -9 "$ALB2_PID"; wait "$ALB2_PID" 2>/dev/null || true
  until_state $MZLB_DNS app.bench.test 0 "$t0" >> "$W/kill.mzlb" & p1=$!
  until_state $GDNSD_DNS app.bench.test 0 "$t0" >> "$W/kill.gdnsd" & p2=$!
  wait "$p1" "$p2"
  t1=$(now_ms); start_alb 2; ALB2_PID=$!
  until_state $MZLB_DNS app.bench.test 1 "$t1" >> "$W/back.mzlb" & p1=$!
  until_state $GDNSD_DNS app.bench.test 1 "$t1" >> "$W/back.gdnsd" & p2=$!
  wait "$p1" "$p2"
  printf '.' >&2
done
echo >&2

# --- planned disable → gone (mzlb), with a client loop honouring the 1 s TTL ----------------
client_loop() {
  local ok=0 failed=0 ips=() at=0 i=0
  while [ ! -e "$W/stop" ]; do
    if [ $(( $(now_ms) - at )) -ge 1000 ] || [ ${#ips[@]} -eq 0 ]; then
      mapfile -t ips < <(dig +short +time=1 +tries=1 @$MZLB_DNS -p $PORT app.bench.test A)
      at=$(now_ms)
    fi
    [ ${#ips[@]} -gt 0 ] || { failed=$((failed + 1)); continue; }
    ip=${ips[$(( i % ${#ips[@]} ))]}; i=$((i + 1))
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --resolve "app.bench.test:8080:$ip" http://app.bench.test:8080/)" = 200 ]; then
      ok=$((ok + 1))
    else
      failed=$((failed + 1))
    fi
  done
  echo "$ok $failed" > "$W/client"
}
client_loop & CLIENT=$!
: > "$W/disable.mzlb"
for _ in $(seq 1 "$TRIALS"); do
  t0=$(now_ms)
  MZLB_STATE_DIR="$W/state" "$BIN/mzlb" alb-configure --alb-id alb2 --disable > /dev/null
  until_state $MZLB_DNS app.bench.test 0 "$t0" >> "$W/disable.mzlb"
  sleep 1.2    # clients holding the old answer (TTL 1 s) still reach the draining ALB
  MZLB_STATE_DIR="$W/state" "$BIN/mzlb" alb-configure --alb-id alb2 --enable > /dev/null
  until_state $MZLB_DNS app.bench.test 1 "$(now_ms)" > /dev/null
  printf '.' >&2
done
echo >&2
touch "$W/stop"; wait "$CLIENT"
read -r OK FAILED < "$W/client"

printf '\n%-22s %10s %10s %12s %12s\n' measurement mzlb_p50 mzlb_p99 gdnsd_p50 gdnsd_p99
printf '%-22s %8sms %8sms %10sms %10sms\n' "kill → gone" "$(pct "$W/kill.mzlb" 50)" "$(pct "$W/kill.mzlb" 99)" "$(pct "$W/kill.gdnsd" 50)" "$(pct "$W/kill.gdnsd" 99)"
printf '%-22s %8sms %8sms %10sms %10sms\n' "restore → back" "$(pct "$W/back.mzlb" 50)" "$(pct "$W/back.mzlb" 99)" "$(pct "$W/back.gdnsd" 50)" "$(pct "$W/back.gdnsd" 99)"
printf '%-22s %8sms %8sms %12s %12s\n' "disable → gone" "$(pct "$W/disable.mzlb" 50)" "$(pct "$W/disable.mzlb" 99)" "-" "-"
echo "client loop during $TRIALS planned disables: $OK requests ok, $FAILED failed"
echo "(times include one dig per poll, a few ms; targets: kill→gone p99 ≤ 1000 ms, disable→gone p99 ≤ 100 ms, restore→back p99 ≤ 2000 ms, 0 failed)"
