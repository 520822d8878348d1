#!/usr/bin/env bash
# Failover with three `mzlb serve` replicas that agree on health through the API server (the
# fake one from tests/, as a program): how long until EVERY replica's answer follows a killed
# ALB, a hung one (SIGSTOP: connections accepted by the kernel, never answered), a restarted
# one, and a disable from the CLI over a kubeconfig. Each trial's figure is the slowest
# replica's.
#
#   bench/failover_replicas.sh [trials, default 20]
#
# Installs dnsutils with apt-get if missing (run as root); builds in release.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
TRIALS=${1:-20}
PORT=5300
REPLICAS=(127.0.52.61 127.0.52.62 127.0.52.63)
ALBS=(127.0.52.1 127.0.52.2 127.0.52.3)
VICTIM=${ALBS[1]}

need_commands dig:dnsutils
cargo build --release -q -p mzlb -p zone-alb -p tests --bin mzlb --bin zone-alb --bin fakeapi
BIN=$PWD/target/release

extra_cleanup() {
  if [ -n "${ALB2_PID:-}" ]; then kill "$ALB2_PID" 2>/dev/null || true; fi
}
setup_workdir

mkdir -p "$W/m"
failover_cluster "${ALBS[@]}" > "$W/m/app.yaml"
"$BIN/fakeapi" 127.0.52.70:0 "$W/kubeconfig" "$W/m/app.yaml" > "$W/api.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do grep -q ready "$W/api.log" && break; sleep 0.1; done
start_alb() { "$BIN/zone-alb" --manifests "$W/m" --alb-id "alb$1" 2>>"$W/alb$1.log" & }
start_alb 1; PIDS+=($!)
start_alb 3; PIDS+=($!)
start_alb 2; ALB2_PID=$!
for i in 0 1 2; do
  MZLB_STATE_DIR="$W/state$i" POD_NAME="mzlb-$i" POD_NAMESPACE=mzlb-system \
    "$BIN/mzlb" serve --kubeconfig "$W/kubeconfig" --dns-listen "${REPLICAS[$i]}:$PORT" \
    --api-listen "${REPLICAS[$i]}:0" > "$W/mzlb$i.log" 2>&1 & PIDS+=($!)
done

has_victim() { # server → 1/0
  dig +short +time=1 +tries=1 @"$1" -p $PORT app.bench.test A 2>/dev/null | grep -qx "$VICTIM" && echo 1 || echo 0
}
# every_replica WANT START → ms from START until every replica's answer has (1) or lacks (0)
# VICTIM (polling them in turn; a replica that got there stays checked off)
every_replica() {
  local deadline=$(( $2 + 30000 )) left=("${REPLICAS[@]}") still r
  while :; do
    still=()
    for r in "${left[@]}"; do [ "$(has_victim "$r")" = "$1" ] || still+=("$r"); done
    [ ${#still[@]} -eq 0 ] && { echo $(( $(now_ms) - $2 )); return; }
    left=("${still[@]}")
    [ "$(now_ms)" -gt "$deadline" ] && { echo timeout; return; }
  done
}
[ "$(every_replica 1 "$(now_ms)")" != timeout ] || { echo "the replicas never answered alb2" >&2; cat "$W"/*.log >&2; exit 1; }

echo "failover with 3 replicas: $TRIALS trials; probes every 200 ms (timeout 150 ms, fall 3, rise 2)"
: > "$W/kill"; : > "$W/back"; : > "$W/disable"; : > "$W/hang"
for _ in $(seq 1 "$TRIALS"); do
  sleep "0.$(( RANDOM % 10 ))"
  t0=$(now_ms); kill -9 "$ALB2_PID"; wait "$ALB2_PID" 2>/dev/null || true
  every_replica 0 "$t0" >> "$W/kill"
  t1=$(now_ms); start_alb 2; ALB2_PID=$!
  every_replica 1 "$t1" >> "$W/back"
  sleep "0.$(( RANDOM % 10 ))"
  t3=$(now_ms); kill -STOP "$ALB2_PID"
  every_replica 0 "$t3" >> "$W/hang"
  kill -CONT "$ALB2_PID"
  every_replica 1 "$(now_ms)" > /dev/null
  sleep 1
  t2=$(now_ms)
  "$BIN/mzlb" alb-configure --alb-id alb2 --disable --kubeconfig "$W/kubeconfig" > /dev/null
  every_replica 0 "$t2" >> "$W/disable"
  "$BIN/mzlb" alb-configure --alb-id alb2 --enable --kubeconfig "$W/kubeconfig" > /dev/null
  every_replica 1 "$(now_ms)" > /dev/null
  printf '.' >&2
done
echo >&2

printf '\n%-34s %8s %8s %8s\n' "measurement (slowest replica)" p50 p99 target
printf '%-34s %6sms %6sms %8s\n' "kill → gone from every replica" "$(pct "$W/kill" 50)" "$(pct "$W/kill" 99)" "≤ 1000"
printf '%-34s %6sms %6sms %8s\n' "hang → gone from every replica" "$(pct "$W/hang" 50)" "$(pct "$W/hang" 99)" "≤ 1000"
printf '%-34s %6sms %6sms %8s\n' "restart → back in every replica" "$(pct "$W/back" 50)" "$(pct "$W/back" 99)" "≤ 2000"
printf '%-34s %6sms %6sms %8s\n' "disable (CLI) → gone everywhere" "$(pct "$W/disable" 50)" "$(pct "$W/disable" 99)" "≤ 150"
echo "(times include one dig per replica per poll, and for disable starting the mzlb CLI)"
