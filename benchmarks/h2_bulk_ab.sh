#!/usr/bin/env bash
# Bulk HTTP/2 through the reverse proxy, builds or settings side by side: 20 MB responses, 4 at once on one connection
# (h2load -c 1 -m 4), in interleaved rounds, on three paths of one node per config:
#   h1   h2c listener -> nginx HTTP/1.1 origin      tls  TLS listener (ALPN h2, HTTP mode) -> nginx HTTP/1.1 origin
#   h2o  h2c listener -> nginx h2c origin (upstream h2c://), and "direct": h2load to that nginx h2c port itself
# Reports MB/s and the node's CPU time (utime+stime from /proc) per GB moved: CPU per GB does not depend on how the
# two cores were shared in a round, MB/s does.
# Usage: benchmarks/h2_bulk_ab.sh name=rama-node[:VAR=value,...] ...   (ROUNDS=3, REQUESTS=60)
#   benchmarks/h2_bulk_ab.sh spin=Rama.Node/bin/Release/net10.0/rama-node:DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=9 \
#                            nospin=Rama.Node/bin/Release/net10.0/rama-node
set -euo pipefail
(($#)) || { sed -n 2,10p "$0"; exit 2; }
ROUNDS=${ROUNDS:-3}; REQUESTS=${REQUESTS:-60}
W=$(mktemp -d /tmp/rama-h2-bulk.XXXX); mkdir -p $W/www $W/tmp; head -c 20000000 /dev/urandom > $W/www/big; chmod -R a+rX $W; chmod 777 $W/tmp
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost -keyout $W/h2.key -out $W/h2.crt 2>/dev/null
P=$(( 20000 + RANDOM % 10000 )); O=$P; OH2=$((P+1))   # below the ephemeral range: an outgoing connection cannot hold these ports
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; sleep 0.5; for p in "${PIDS[@]}"; do kill -9 $p 2>/dev/null || true; done; rm -rf $W; }
trap cleanup EXIT
cat > $W/nginx.conf <<NG
worker_processes 2; daemon off; pid $W/nginx.pid; error_log $W/err.log; worker_rlimit_nofile 20000;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/tmp; proxy_temp_path $W/tmp; fastcgi_temp_path $W/tmp; uwsgi_temp_path $W/tmp; scgi_temp_path $W/tmp;
  keepalive_timeout 600s; keepalive_requests 10000000; tcp_nodelay on; sendfile on;
  server { listen 127.0.0.1:$O backlog=4096; listen 127.0.0.1:$OH2 http2; root $W/www; } }
NG
/usr/sbin/nginx -c $W/nginx.conf -p $W > $W/nginx.out 2>&1 & PIDS+=($!)
names=(); pids=(); bases=()
i=0
for conf in "$@"; do
  name=${conf%%=*}; rest=${conf#*=}; bin=${rest%%:*}; envs=(); [ "$rest" != "$bin" ] && IFS=, read -ra envs <<<"${rest#*:}"
  b=$((P + 10 + i*4)); i=$((i+1))
  env DOTNET_TieredPGO=1 Rama__Tls__UpstreamMode=http "${envs[@]}" "$bin" --admin 127.0.0.1:0 --listen 127.0.0.1:$b \
    --reverse 127.0.0.1:$((b+1))=127.0.0.1:$O --reverse 127.0.0.1:$((b+3))=h2c://127.0.0.1:$OH2 \
    --tls-listen 127.0.0.1:$((b+2)) --upstream 127.0.0.1:$O --cert $W/h2.crt --key $W/h2.key > $W/$name.out 2>&1 &
  PIDS+=($!); names+=("$name"); pids+=($!); bases+=($b)
done
url() { # index path
  local b=${bases[$1]}
  case $2 in h1) echo "http://127.0.0.1:$((b+1))/big";; tls) echo "https://127.0.0.1:$((b+2))/big";; h2o) echo "http://127.0.0.1:$((b+3))/big";; esac
}
run() { # url requests -> "MB/s"
  local out; out=$(h2load -c 1 -m 4 -t 1 -n $2 "$1" 2>&1)
  grep -q "$2 succeeded" <<<"$out" || { echo "$1: not every request succeeded" >&2; grep -E "^requests" <<<"$out" >&2; exit 1; }
  awk '/^finished in/ {gsub(",",""); v=$6; u=v; sub(/[0-9.]+/,"",u); sub(/[A-Za-z\/]+$/,"",v); if (u ~ /^GB/) v*=1000; if (u ~ /^KB/) v/=1000; printf "%.0f", v}' <<<"$out"
}
for k in "${!pids[@]}"; do
  for _ in $(seq 600); do curl -s -o /dev/null "$(url $k h1)" && break; sleep 0.1; done
  for path in h1 tls h2o; do run "$(url $k $path)" 20 > /dev/null; done   # warm-up: the JIT's tiers and the pools settle
done
echo "h2load -c 1 -m 4 -t 1 -n $REQUESTS of 20 MB, $ROUNDS interleaved rounds; load $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A mbs cpu
for r in $(seq $ROUNDS); do
  mbs[direct]+="$(run http://127.0.0.1:$OH2/big $REQUESTS) "
  for path in h1 tls h2o; do
    for k in "${!pids[@]}"; do
      t0=$(awk '{print $14+$15}' /proc/${pids[$k]}/stat)
      x=$(run "$(url $k $path)" $REQUESTS)
      t1=$(awk '{print $14+$15}' /proc/${pids[$k]}/stat)
      mbs[$path-$k]+="$x "; cpu[$path-$k]+="$(awk -v t=$((t1-t0)) -v n=$REQUESTS 'BEGIN {printf "%.2f", t/100/(n*0.02)}') "
    done
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-6s %-12s %-28s %-8s %-28s %s\n' path config "MB/s" median "CPU s per GB" median
printf '%-6s %-12s %-28s %-8s\n' h2o direct "${mbs[direct]}" "$(median <<<"${mbs[direct]}")"
for path in h1 tls h2o; do
  for k in "${!pids[@]}"; do
    printf '%-6s %-12s %-28s %-8s %-28s %s\n' $path "${names[$k]}" "${mbs[$path-$k]}" "$(median <<<"${mbs[$path-$k]}")" "${cpu[$path-$k]}" "$(median <<<"${cpu[$path-$k]}")"
  done
done
