#!/usr/bin/env bash
# CPU per request of HTTP/2 reverse-proxy builds (and haproxy), side by side: an nginx origin (1 KiB file), one node per
# config with an h2c reverse listener and a TLS listener in HTTP mode, h2load -c 16 -m 10 -t 1 to each in interleaved
# rounds. Reports req/s and the node's CPU time (utime+stime from /proc) per request: CPU per request does not depend on
# how the two cores were shared in a round, req/s does.
# Usage: benchmarks/h2_ab.sh [--tls] name=rama-node[:VAR=value,...] ...   (ROUNDS=4, REQUESTS=60000, WARMUP=200000)
#   benchmarks/h2_ab.sh before=/tmp/base/rama-node after=Rama.Node/bin/Release/net10.0/rama-node
#   benchmarks/h2_ab.sh --tls after=Rama.Node/bin/Release/net10.0/rama-node nofp=Rama.Node/bin/Release/net10.0/rama-node:Logging__LogLevel__Rama.Proxy.Fingerprint=Warning
# haproxy (nbthread 2, as in benchmarks/run) is measured too, as "haproxy".
set -euo pipefail
TLS=0
if [ "${1:-}" = "--tls" ]; then TLS=1; shift; fi
(($#)) || { sed -n 2,9p "$0"; exit 2; }
ROUNDS=${ROUNDS:-4}; REQUESTS=${REQUESTS:-60000}; WARMUP=${WARMUP:-200000}
. "$(dirname "$0")/ab_lib.sh"
ab_setup rama-h2-ab; O=$P
head -c 1024 /dev/urandom > $W/www/1k
ab_origin
cat > $W/haproxy.cfg <<HA
global
  maxconn 9500
  nbthread 2
defaults
  mode http
  timeout connect 5s
  timeout client 600s
  timeout server 600s
frontend h2c
  bind 127.0.0.1:$((P+1)) proto h2
  default_backend be
frontend h2s
  bind 127.0.0.1:$((P+2)) ssl crt $W/h2.pem alpn h2,http/1.1
  default_backend be
backend be
  http-reuse always
  server origin 127.0.0.1:$O
HA
/usr/sbin/haproxy -db -f $W/haproxy.cfg > $W/haproxy.out 2>&1 & PIDS+=($!)
names=(haproxy); pids=($!); ports=($((P+1))); tlsports=($((P+2)))
i=0
for conf in "$@"; do
  b=$((P + 10 + i*3)); i=$((i+1))
  ab_node "$conf" $b
  names+=("$AB_NAME"); pids+=($AB_PID); ports+=($((b + 1))); tlsports+=($((b + 2)))
done
url() { if ((TLS)); then echo "https://127.0.0.1:${tlsports[$1]}/1k"; else echo "http://127.0.0.1:${ports[$1]}/1k"; fi; }
measure() { # index requests -> "rps cpu_us"
  local pid=${pids[$1]} t0 t1 out
  t0=$(proc_cpu $pid)
  out=$(h2load -c 16 -m 10 -t 1 -n $2 "$(url $1)" 2>&1)
  t1=$(proc_cpu $pid)
  grep -q "$2 succeeded" <<<"$out" || { echo "${names[$1]}: not every request succeeded" >&2; grep -E "^requests" <<<"$out" >&2; exit 1; }
  awk -v t=$((t1-t0)) -v n=$2 -v hz="$(getconf CLK_TCK)" -v rps="$(awk '/^finished in/ {gsub(",",""); print $4}' <<<"$out")" 'BEGIN {printf "%.0f %.1f", rps, t*1e6/hz/n}'
}
for k in "${!pids[@]}"; do
  for _ in $(seq 600); do curl -sk -o /dev/null "$(url $k)" && break; sleep 0.1; done
  measure $k $WARMUP > /dev/null   # warm-up: the JIT's tiers and the pools settle
done
echo "$( ((TLS)) && echo "h2 TLS" || echo h2c ) /1k, h2load -c 16 -m 10 -t 1 -n $REQUESTS, $ROUNDS interleaved rounds; load $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A cpu rps
for r in $(seq $ROUNDS); do
  for k in "${!pids[@]}"; do
    read -r x c <<<"$(measure $k $REQUESTS)"
    rps[$k]+="$x "; cpu[$k]+="$c "
  done
done
for k in "${!pids[@]}"; do
  printf '%-12s req/s %-36s median %6s   CPU us/request %-28s median %5s\n' "${names[$k]}" "${rps[$k]}" \
    "$(ab_median <<<"${rps[$k]}")" "${cpu[$k]}" "$(ab_median <<<"${cpu[$k]}")"
done
