#!/usr/bin/env bash
# HTTPS benchmark: zone-alb against nginx and HAProxy terminating TLS in front of the same
# backend (one worker/thread each, TLS 1.2 and 1.3, nginx and HAProxy with a shared session
# cache and tickets as zone-alb has), in the same run. Rows: 64 keep-alive HTTPS connections;
# full handshakes, a new connection per request, with an RSA-2048 and with an ECDSA P-256
# certificate (bench/tlsload --no-resume: 64 clients, timed from connect to the last byte);
# wrk with a new connection per request (Connection: close), which is a resumed TLS 1.3
# handshake: wrk keeps each connection's last session across its reconnections (OpenSSL's
# SSL_clear keeps it) and offers it, and wrk times a request from its write, after the
# handshake; resumed handshakes, TLS 1.2 and TLS 1.3 (bench/tlsload: 64 virtual clients, each
# with its own session store as each browser has, a new connection per request, every
# handshake after a client's first one resumed; the row warns when fewer than 90% were); and
# HTTP/2 with h2load (64 connections x 10 concurrent streams). Prints per proxy: requests/s,
# p50/p99 latency, proxy CPU time per request (or per connection) and ratios to nginx.
#
#   bench/tls.sh [seconds per run, default 10]
#   ALB_BASE=/path/to/other/zone-alb bench/tls.sh   # A/B: that build too, in the same run
#   ALB_BIN=/path/to/zone-alb bench/tls.sh           # measure that build (no zone-alb build)
#   ROWS="h2 ka" bench/tls.sh                         # only these rows (ka full wrk res h2)
#
# wrk and h2load reach each proxy by name (for SNI) through an /etc/hosts bind-mounted in a
# private mount namespace (unshare -m), so the machine's own file is untouched; tlsload connects
# to the IP and sends the name itself. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
SECS=${1:-10}
BACKEND=127.0.108.10:9000
declare -A IP=([nginx-rsa]=127.0.108.1 [nginx-ec]=127.0.108.2 [zone-alb-rsa]=127.0.108.3 [zone-alb-ec]=127.0.108.4
  [base-rsa]=127.0.108.5 [base-ec]=127.0.108.6 [haproxy-rsa]=127.0.108.7 [haproxy-ec]=127.0.108.8)

need_commands nginx:nginx-light haproxy:haproxy wrk:wrk h2load:nghttp2-client curl:curl openssl:openssl \
  unshare:util-linux tcpdump:tcpdump python3:python3
ALB_BIN=${ALB_BIN:-}
if [ -n "$ALB_BIN" ]; then
  cargo build --release -q -p tlsload
else
  cargo build --release -q -p zone-alb -p tlsload; ALB_BIN=target/release/zone-alb
fi
TLSLOAD=target/release/tlsload
setup_workdir
backend_nginx "$W/backend" "$BACKEND"; PIDS+=($!)

# --- certificates: *.bench.test, RSA-2048 and ECDSA P-256 ----------------------------------
openssl req -x509 -nodes -days 2 -subj /CN=bench.test -addext 'subjectAltName=DNS:*.bench.test' \
  -newkey rsa:2048 -keyout "$W/rsa.key" -out "$W/rsa.crt" 2>/dev/null
openssl req -x509 -nodes -days 2 -subj /CN=bench.test -addext 'subjectAltName=DNS:*.bench.test' \
  -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$W/ec.key" -out "$W/ec.crt" 2>/dev/null
for key in rsa ec; do cat "$W/$key.crt" "$W/$key.key" > "$W/$key.pem"; done # for HAProxy
hosts="$W/hosts"
for name in "${!IP[@]}"; do echo "${IP[$name]} $name.bench.test" >> "$hosts"; done

# --- nginx terminating TLS ------------------------------------------------------------------
nginx_tls() { # dir listen-ip cert
  mkdir -p "$1"
  cat > "$1/nginx.conf" <<CONF
worker_processes 1;
error_log $1/error.log;
pid $1/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream app { server $BACKEND; keepalive 64; }
  server {
    listen $2:8443 ssl http2;
    ssl_certificate $W/$3.crt;
    ssl_certificate_key $W/$3.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
CONF
  nginx -p "$1" -c "$1/nginx.conf" -g 'daemon off;' & PIDS+=($!)
}

# --- HAProxy terminating TLS (its default session cache and tickets), one thread -------------
haproxy_tls() { # config-file listen-ip cert
  cat > "$1" <<CONF
global
  nbthread 1
  maxconn 8192
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind $2:8443 ssl crt $W/$3.pem alpn h2,http/1.1 ssl-min-ver TLSv1.2
  option forwardfor
  http-request set-header X-Forwarded-Proto https
  default_backend app
backend app
  server s1 $BACKEND
CONF
  haproxy -f "$1" -db & PIDS+=($!)
}

# --- zone-alb terminating TLS: the bench site with a TLS port and the certificate's Secret --
alb_tls() { # dir listen-ip cert binary
  alb_site "$1" "$2" "$BACKEND"
  sed -i 's/port: 8080}/port: 8080, tlsPort: 8443}/' "$1/app.yaml"
  {
    printf -- '---\napiVersion: v1\nkind: Secret\nmetadata: {name: bench-tls}\ntype: kubernetes.io/tls\nstringData:\n'
    printf '  tls.crt: |\n'; sed 's/^/    /' "$W/$3.crt"
    printf '  tls.key: |\n'; sed 's/^/    /' "$W/$3.key"
    printf -- "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: tls}\n"
    printf "spec: {ingressClassName: mzlb, tls: [{hosts: ['*.bench.test'], secretName: bench-tls}],\n"
    printf "  defaultBackend: {service: {name: app, port: {number: 80}}}}\n"
  } >> "$1/app.yaml"
  RUST_LOG=warn "$4" --workers 1 --manifests "$1" --alb-id alb & PIDS+=($!)
}

declare -A PID
for key in rsa ec; do
  nginx_tls "$W/nginx-$key" "${IP[nginx-$key]}" "$key"; PID[nginx-$key]=$!
  haproxy_tls "$W/haproxy-$key.cfg" "${IP[haproxy-$key]}" "$key"; PID[haproxy-$key]=$!
  alb_tls "$W/alb-$key" "${IP[zone-alb-$key]}" "$key" "$ALB_BIN"; PID[zone-alb-$key]=$!
  if [ -n "${ALB_BASE:-}" ]; then
    alb_tls "$W/base-$key" "${IP[base-$key]}" "$key" "$ALB_BASE"; PID[base-$key]=$!
  fi
done
for name in "${!PID[@]}"; do
  for _ in $(seq 1 100); do
    curl -skf -o /dev/null "https://${IP[$name]}:8443/" && break
    sleep 0.1
  done
  curl -skf -o /dev/null "https://${IP[$name]}:8443/" || { echo "$name does not answer" >&2; exit 1; }
  kill -0 "${PID[$name]}" 2>/dev/null || { echo "$name exited at start (address in use?)" >&2; exit 1; }
done

HZ=$(getconf CLK_TCK)
to_us() { # wrk latency like 1.23ms / 456.00us / 1.2s → microseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n }'
}

declare -A RPS P50 P99 CPU
declare -A NOTE
run() { # row proxy [extra wrk args]: wrk by name, so SNI picks the Ingress's certificate
  local row=$1 name=$2; shift 2
  local pid=${PID[$name]} before after out requests capture="" pcap="$W/$row$name.pcap"
  if [ -n "${CAPTURE:-}" ]; then
    # 2 s from the middle of the run, for the server side of each request (bench/tls_phases.py).
    (sleep $(( SECS / 2 )); timeout 2 tcpdump -i lo -nn -s 96 -w "$pcap" "host ${IP[$name]} and port 8443" \
      >/dev/null 2>&1 || true) & capture=$!
  fi
  before=$(ticks "$pid")
  out=$(unshare -m sh -c "mount --bind '$hosts' /etc/hosts && exec wrk -t1 -c64 -d${SECS}s --latency \"\$@\"" \
    wrk "$@" "https://$name.bench.test:8443/")
  after=$(ticks "$pid")
  if [ -n "$capture" ]; then
    wait "$capture"
    NOTE[$row$name]="  server side, from the request's arrival to the response's end: $(python3 bench/tls_phases.py \
      "$pcap" "${IP[$name]}.8443" | awk '/response.s end/ {print $(NF-3), $(NF-1), $NF}')"
  fi
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  RPS[$row$name]=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  P50[$row$name]=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  P99[$row$name]=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  CPU[$row$name]=$(awk -v t=$(( after - before )) -v hz="$HZ" -v n="$requests" 'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}')
}

field() { # name line → the value after the word <name> in a tlsload line
  awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}' <<<"$2"
}

resumed() { # row proxy tls-version [--no-resume]: tlsload, 64 virtual clients each resuming its own sessions
  local row=$1 name=$2 version=$3 fresh=${4:-}
  local pid=${PID[$name]} before after out conns res full errors
  before=$(ticks "$pid")
  # shellcheck disable=SC2086 # $fresh: no flag, or the one flag
  out=$("$TLSLOAD" --connect "${IP[$name]}:8443" --sni "$name.bench.test" --tls "$version" \
    --connections 64 --duration "$SECS" $fresh) || echo "WARNING: tlsload failed against $name" >&2
  after=$(ticks "$pid")
  conns=$(field connections "$out"); res=$(field resumed "$out"); full=$(field full "$out")
  errors=$(field errors "$out")
  RPS[$row$name]=$(awk -v r="$(field rate "$out")" 'BEGIN {printf "%.0f", r + 0}')
  P50[$row$name]=$(field p50_us "$out"); P99[$row$name]=$(field p99_us "$out")
  CPU[$row$name]=$(awk -v t=$(( after - before )) -v hz="$HZ" -v n="${conns:-0}" 'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}')
  NOTE[$row$name]="  handshakes: ${res:-0} resumed, ${full:-0} full; ${errors:-?} errors"
  if [ -z "$fresh" ] && (( ${res:-0} * 10 < (${res:-0} + ${full:-0}) * 9 || ${res:-0} == 0 )); then
    NOTE[$row$name]+="  WARNING: fewer than 90% resumed"
    echo "WARNING: $name, TLS $version: only ${res:-0} of $(( ${res:-0} + ${full:-0} )) handshakes resumed" >&2
  fi
}

h2() { # row proxy: h2load, 64 connections x 10 concurrent streams, HTTP/2 over TLS (ALPN h2)
  local row=$1 name=$2
  local pid=${PID[$name]} before after out requests log="$W/h2-$name.log"
  before=$(ticks "$pid")
  out=$(unshare -m sh -c "mount --bind '$hosts' /etc/hosts && exec h2load -t1 -c64 -m10 -D$SECS --log-file='$log' \"\$@\"" \
    h2load "https://$name.bench.test:8443/")
  after=$(ticks "$pid")
  requests=$(awk '/^requests:/ {print $8}' <<<"$out")
  RPS[$row$name]=$(awk -v n="$requests" -v s="$SECS" 'BEGIN {printf "%.0f", n / s}')
  # h2load prints no percentiles; its log has each request's time in microseconds (column 3).
  P50[$row$name]=$(cut -f3 "$log" | sort -n | awk '{v[NR] = $1} END {print NR ? v[int(NR * 0.50) + 1] : 0}')
  P99[$row$name]=$(cut -f3 "$log" | sort -n | awk '{v[NR] = $1} END {print NR ? v[int(NR * 0.99) + 1] : 0}')
  CPU[$row$name]=$(awk -v t=$(( after - before )) -v hz="$HZ" -v n="${requests:-0}" 'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}')
}

report() { # title row key
  local row=$2 key=$3 ref="$2nginx-$3"
  printf '\n%s\n%-9s %10s %9s %9s %13s %9s %9s %9s\n' "$1" proxy req/s p50_us p99_us cpu_us/req rps/nginx cpu/nginx p99/nginx
  for p in nginx haproxy zone-alb base; do
    local k="$row$p-$key"
    [ -n "${RPS[$k]:-}" ] || continue
    printf '%-9s %10s %9s %9s %13s %9s %9s %9s\n' "$p" "${RPS[$k]}" "${P50[$k]}" "${P99[$k]}" "${CPU[$k]}" \
      "$(awk -v a="${RPS[$k]}" -v b="${RPS[$ref]}" 'BEGIN {printf "%.2f", b ? a / b : 0}')" \
      "$(awk -v a="${CPU[$k]}" -v b="${CPU[$ref]}" 'BEGIN {printf "%.2f", b ? a / b : 0}')" \
      "$(awk -v a="${P99[$k]}" -v b="${P99[$ref]}" 'BEGIN {if (a == "-" || !b) print "-"; else printf "%.2f", a / b}')"
    [ -z "${NOTE[$k]:-}" ] || echo "${NOTE[$k]}"
  done
}

proxies() { # key → the proxies measured for it
  echo "nginx-$1" "haproxy-$1" "zone-alb-$1"
  [ -z "${ALB_BASE:-}" ] || echo "base-$1"
}

echo "wrk, h2load, tlsload: 1 thread, 64 connections, ${SECS}s per run; one worker per proxy; backend: nginx returning a 23-byte body"
want() { [ -z "${ROWS:-}" ] || [[ " $ROWS " == *" $1 "* ]]; }
if want ka; then
  for p in $(proxies ec); do run ka "$p"; done
  report "HTTPS keep-alive (ECDSA P-256, TLS 1.3)" ka ec
fi
if want full; then
  for key in rsa ec; do
    for p in $(proxies "$key"); do resumed full "$p" 1.3 --no-resume; done
  done
  report "full handshakes, RSA-2048, TLS 1.3 (tlsload --no-resume: 64 clients, a new connection per request; latency from connect to the last byte)" full rsa
  report "full handshakes, ECDSA P-256, TLS 1.3 (tlsload --no-resume: 64 clients, a new connection per request; latency from connect to the last byte)" full ec
fi
if want wrk; then
  # wrk resumes each connection's previous session, and times a request from its write. Its
  # latency is mostly its own (one thread doing 64 connections' handshakes): a capture gives
  # each proxy's share of it.
  for p in $(proxies ec); do CAPTURE=1 run new "$p" -H "Connection: close"; done
  report "new connection per request, wrk (TLS 1.3 handshakes resumed by wrk, ECDSA P-256; latency from the request's write, after the handshake)" new ec
fi
if want res; then
  for v in 1.2 1.3; do
    for p in $(proxies ec); do resumed "res$v" "$p" "$v"; done
    report "resumed handshakes, TLS $v (tlsload: 64 clients, a new connection per request, ECDSA P-256; cpu_us per connection)" "res$v" ec
  done
fi
if want h2; then
  for p in $(proxies ec); do h2 h2 "$p"; done
  report "HTTP/2 (h2load: 64 connections x 10 streams, ECDSA P-256, TLS 1.3)" h2 ec
fi
