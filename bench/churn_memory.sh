#!/usr/bin/env bash
# Memory under churn: does anything in zone-alb grow without bound while its configuration
# keeps changing under traffic? For DURATION seconds: an Ingress file rewritten every 1.2 s
# with a new Ingress (new name, host and limit, and one request to it, so old routes, limiter
# entries and metrics label sets must be let go), an EndpointSlice that moves between backends (idle pools for vanished
# endpoints), now and then a broken file (rejected, the last good table keeps serving),
# while curl sends ~200 requests/s over keep-alive and 200 WebSockets stay open and
# exchange a message every few seconds. RSS of zone-alb is sampled every 10 s; the script
# prints it after the first minute and at the end, and the growth between them.
#
#   bench/churn_memory.sh [seconds, default 1800]
#
# Installs nginx-light and curl with apt-get if missing (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
DURATION=${1:-1800}
ALB=127.0.63.1
BACKENDS=(127.0.63.10 127.0.63.11 127.0.63.12)
WS_BACKEND=127.0.63.20:9100

need_commands nginx:nginx-light curl:curl python3:python3
cargo build --release -q -p zone-alb
setup_workdir

for b in "${BACKENDS[@]}"; do
  backend_nginx "$W/backend-$b" "$b:9000"; PIDS+=($!)
done

# A WebSocket-shaped backend: answers an Upgrade with 101 and echoes what follows.
cat > "$W/ws.py" <<'PY'
import socket, sys, threading
def serve(c):
    with c:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = c.recv(4096)
            if not chunk:
                return
            head += chunk
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        while True:
            data = c.recv(4096)
            if not data:
                return
            c.sendall(data)
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, int(port))); s.listen(1024)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
python3 "$W/ws.py" "$WS_BACKEND" & PIDS+=($!)

mkdir -p "$W/site"
cat > "$W/site/base.yaml" <<CONF
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
apiVersion: v1
kind: Service
metadata: {name: ws}
spec: {ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ws-1, labels: {kubernetes.io/service-name: ws}}
addressType: IPv4
ports: [{port: ${WS_BACKEND##*:}}]
endpoints: [{addresses: [${WS_BACKEND%%:*}]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: steady}
spec:
  ingressClassName: mzlb
  rules:
  - host: steady.bench.test
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}]}
  - host: ws.bench.test
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: ws, port: {number: 80}}}}]}
CONF
slice() { # backend-ip
  cat > "$W/site/slice.yaml" <<CONF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: app-1, labels: {kubernetes.io/service-name: app}}
addressType: IPv4
ports: [{port: 9000}]
endpoints: [{addresses: [$1]}]
CONF
}
churn_ingress() { # n
  cat > "$W/site/churn.yaml.tmp" <<CONF
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: churn-$1
  annotations: {nginx.ingress.kubernetes.io/limit-rps: "$(( 50 + $1 % 50 ))"}
spec:
  ingressClassName: mzlb
  rules:
  - host: h$1.bench.test
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}]}
CONF
  mv "$W/site/churn.yaml.tmp" "$W/site/churn.yaml"
}
slice "${BACKENDS[0]}"
churn_ingress 0

./target/release/zone-alb --alb-id alb --manifests "$W/site" 2>"$W/alb.log" & ALB_PID=$!; PIDS+=("$ALB_PID")
for _ in $(seq 100); do
  curl -s -o /dev/null -H 'Host: steady.bench.test' "http://$ALB:8080/" && break
  sleep 0.1
done

# ~200 requests/s on one keep-alive connection, until killed.
curl -s -o /dev/null --rate 200/s -H 'Host: steady.bench.test' "http://$ALB:8080/[1-100000000]" & PIDS+=($!)

# 200 upgraded connections through the ALB, each sending a line every ~3 s and reading it back.
cat > "$W/wsclient.py" <<'PY'
import random, socket, sys, time
addr = (sys.argv[1], 8080)
conns = []
for i in range(200):
    c = socket.create_connection(addr)
    c.sendall(b"GET / HTTP/1.1\r\nHost: ws.bench.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += c.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    conns.append(c)
lost = 0
while True:
    for c in conns:
        try:
            c.sendall(b"ping\n")
            if c.recv(16) != b"ping\n":
                lost += 1
        except OSError:
            lost += 1
    print(lost, flush=True)
    time.sleep(3 + random.random())
PY
python3 "$W/wsclient.py" "$ALB" > "$W/ws.out" & PIDS+=($!)

start=$(date +%s)
n=0
next_sample=$start
minute_rss=""
echo "seconds  rss_kib"
while :; do
  now=$(date +%s)
  (( now - start >= DURATION )) && break
  n=$((n + 1))
  churn_ingress "$n"
  slice "${BACKENDS[$(( n % ${#BACKENDS[@]} ))]}"
  # Traffic to the Ingress just made, once it is served (so it leaves metrics behind).
  for _ in $(seq 20); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: h$n.bench.test" "http://$ALB:8080/")" = 200 ] && break
    sleep 0.05
  done
  if (( n % 25 == 0 )); then
    # A broken file: rejected; the last good table keeps serving.
    echo "kind: Ingress: [" > "$W/site/broken.yaml"; sleep 0.5; rm -f "$W/site/broken.yaml"
  fi
  if (( now >= next_sample )); then
    rss=$(rss_kib "$ALB_PID")
    echo "$(( now - start ))  $rss"
    (( now - start >= 60 )) && [ -z "$minute_rss" ] && minute_rss=$rss
    next_sample=$(( next_sample + 10 ))
  fi
  sleep 1.2
done
end_rss=$(rss_kib "$ALB_PID")
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: steady.bench.test' "http://$ALB:8080/")
lost=$(tail -1 "$W/ws.out" 2>/dev/null || echo "?")
echo
echo "edits: $n; steady host after the run: HTTP $code; WebSocket round trips lost: $lost"
echo "RSS after the first minute: ${minute_rss:-?} KiB; at the end (${DURATION} s): $end_rss KiB"
if [ -n "$minute_rss" ]; then
  awk -v a="$minute_rss" -v b="$end_rss" 'BEGIN { printf "growth: %+.1f %%\n", (b - a) * 100 / a }'
fi
