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
W=$(mktemp -d /tmp/rama-h2-ab.XXXX); mkdir -p $W/www $W/tmp; head -c 1024 /dev/urandom > $W/www/1k; chmod -R a+rX $W; chmod 777 $W/tmp
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost -keyout $W/h2.key -out $W/h2.crt 2>/dev/null
cat $W/h2.crt $W/h2.key > $W/h2.pem
P=$(( 20000 + RANDOM % 10000 )); O=$P   # below the ephemeral range: an outgoing connection cannot hold these ports
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; sleep 0.5; for p in "${PIDS[@]}"; do kill -9 $p 2>/dev/null || true; done; rm -rf $W; }
trap cleanup EXIT
cat > $W/nginx.conf <<NG
worker_processes 2; daemon off; pid $W/nginx.pid; error_log $W/err.log; worker_rlimit_nofile 20000;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/tmp; proxy_temp_path $W/tmp; fastcgi_temp_path $W/tmp; uwsgi_temp_path $W/tmp; scgi_temp_path $W/tmp;
  keepalive_timeout 600s; keepalive_requests 10000000; tcp_nodelay on; sendfile on;
  server { listen 127.0.0.1:$O backlog=4096; root $W/www; } }
NG
/usr/sbin/nginx -c $W/nginx.conf -p $W > $W/nginx.out 2>&1 & PIDS+=($!)
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
  name=${conf%%=*}; rest=${conf#*=}; bin=${rest%%:*}; envs=(); [ "$rest" != "$bin" ] && IFS=, read -ra envs <<<"${rest#*:}"
  h2c=$((P + 10 + i*3)); tls=$((h2c + 1)); plain=$((h2c + 2)); i=$((i+1))
  env DOTNET_TieredPGO=1 Rama__Tls__UpstreamMode=http "${envs[@]}" "$bin" --admin 127.0.0.1:0 --listen 127.0.0.1:$plain \
    --reverse 127.0.0.1:$h2c=127.0.0.1:$O --tls-listen 127.0.0.1:$tls --upstream 127.0.0.1:$O --cert $W/h2.crt --key $W/h2.key > $W/$name.out 2>&1 &
  PIDS+=($!); names+=("$name"); pids+=($!); ports+=($h2c); tlsports+=($tls)
done
url() { if ((TLS)); then echo "https://127.0.0.1:${tlsports[$1]}/1k"; else echo "http://127.0.0.1:${ports[$1]}/1k"; fi; }
measure() { # index requests -> "rps cpu_us"
  local pid=${pids[$1]} t0 t1 out
  t0=$(awk '{print $14+$15}' /proc/$pid/stat)
  out=$(h2load -c 16 -m 10 -t 1 -n $2 "$(url $1)" 2>&1)
  t1=$(awk '{print $14+$15}' /proc/$pid/stat)
  grep -q "$2 succeeded" <<<"$out" || { echo "${names[$1]}: not every request succeeded" >&2; grep -E "^requests" <<<"$out" >&2; exit 1; }
  awk -v t=$((t1-t0)) -v n=$2 -v rps="$(awk '/^finished in/ {gsub(",",""); print $4}' <<<"$out")" 'BEGIN {printf "%.0f %.1f", rps, t*10000/n}'
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
    "$(tr ' ' '\n' <<<"${rps[$k]}" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" "${cpu[$k]}" \
    "$(tr ' ' '\n' <<<"${cpu[$k]}" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
done
