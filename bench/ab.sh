#!/usr/bin/env bash
# A/B of two zone-alb builds in the same run: this checkout's release build (A) and another
# binary (B, e.g. a build of main before a change), one worker each, in front of the same
# backend, measured in alternating rounds (A then B, then B then A, ...) so that drift of the
# machine falls on both alike. Prints per round and in total: requests/s and CPU time per
# request for keep-alive connections and for a new connection per request.
#
#   bench/ab.sh /path/to/other/zone-alb [rounds, default 6] [seconds per run, default 5]
#
# Installs nginx-light (the backend) and wrk with apt-get if missing (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
B_BIN=${1:?usage: bench/ab.sh /path/to/other/zone-alb [rounds] [seconds]}
ROUNDS=${2:-6}
SECS=${3:-5}
BACKEND=127.0.61.10:9000
A=127.0.61.1
B=127.0.61.2

need_commands nginx:nginx-light wrk:wrk curl:curl
cargo build --release -q -p zone-alb
setup_workdir

backend_nginx "$W/backend" "$BACKEND"; PIDS+=($!)

alb_site "$W/a" "$A" "$BACKEND"
alb_site "$W/b" "$B" "$BACKEND"
RUST_LOG=warn target/release/zone-alb --workers 1 --manifests "$W/a" --alb-id alb & PIDS+=($!); A_PID=$!
RUST_LOG=warn "$B_BIN" --workers 1 --manifests "$W/b" --alb-id alb & PIDS+=($!); B_PID=$!
for url in "http://$BACKEND/" "http://$A:8080/" "http://$B:8080/"; do
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "$url" && break
    sleep 0.1
  done
  curl -sf -o /dev/null "$url" || { echo "$url does not answer" >&2; exit 1; }
done

HZ=$(getconf CLK_TCK)
declare -A REQ TICKS
measure() { # key url pid [extra wrk args]
  local key=$1 url=$2 pid=$3; shift 3
  local before after out
  before=$(ticks "$pid")
  out=$(wrk -t1 -c64 -d"${SECS}s" "$@" "$url")
  after=$(ticks "$pid")
  local n; n=$(awk '/requests in/ {print $1}' <<<"$out")
  REQ[$key]=$(( ${REQ[$key]:-0} + n ))
  TICKS[$key]=$(( ${TICKS[$key]:-0} + after - before ))
  awk -v n="$n" -v t=$(( after - before )) -v hz="$HZ" -v s="$SECS" -v k="$key" \
    'BEGIN {printf "  %-8s %9.0f req/s %7.2f us/req\n", k, n / s, t / hz * 1e6 / n}'
}

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  order=(A B); [ $(( round % 2 )) -eq 0 ] && order=(B A)
  for side in "${order[@]}"; do
    if [ "$side" = A ]; then ip=$A pid=$A_PID; else ip=$B pid=$B_PID; fi
    measure "$side" "http://$ip:8080/" "$pid"
    measure "${side}_new" "http://$ip:8080/" "$pid" -H "Connection: close"
  done
done

echo
echo "total over $ROUNDS rounds of ${SECS}s (A: this checkout, B: $B_BIN)"
for key in A B A_new B_new; do
  awk -v n="${REQ[$key]}" -v t="${TICKS[$key]}" -v hz="$HZ" -v s=$(( SECS * ROUNDS )) -v k="$key" \
    'BEGIN {printf "  %-8s %9.0f req/s %7.2f us/req\n", k, n / s, t / hz * 1e6 / n}'
done
awk -v a="${REQ[A]}" -v b="${REQ[B]}" -v ta="${TICKS[A]}" -v tb="${TICKS[B]}" \
  'BEGIN {printf "keep-alive: A/B rate %.3f, A/B CPU per request %.3f\n", a / b, (ta / a) / (tb / b)}'
awk -v a="${REQ[A_new]}" -v b="${REQ[B_new]}" -v ta="${TICKS[A_new]}" -v tb="${TICKS[B_new]}" \
  'BEGIN {printf "new connection per request: A/B rate %.3f, A/B CPU per request %.3f\n", a / b, (ta / a) / (tb / b)}'
