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
. "$(dirname "$0")/ab_lib.sh"
ab_setup rama-h2-bulk; O=$P; OH2=$((P+1))
head -c 20000000 /dev/urandom > $W/www/big
ab_origin "listen 127.0.0.1:$OH2 http2;"
names=(); pids=(); bases=()
i=0
for conf in "$@"; do
  b=$((P + 10 + i*4)); i=$((i+1))
  ab_node "$conf" $b --reverse 127.0.0.1:$((b+3))=h2c://127.0.0.1:$OH2
  names+=("$AB_NAME"); pids+=($AB_PID); bases+=($b)
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
      t0=$(proc_cpu ${pids[$k]})
      x=$(run "$(url $k $path)" $REQUESTS)
      t1=$(proc_cpu ${pids[$k]})
      mbs[$path-$k]+="$x "; cpu[$path-$k]+="$(awk -v t=$((t1-t0)) -v n=$REQUESTS -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t/hz/(n*0.02)}') "
    done
  done
done
printf '%-6s %-12s %-28s %-8s %-28s %s\n' path config "MB/s" median "CPU s per GB" median
printf '%-6s %-12s %-28s %-8s\n' h2o direct "${mbs[direct]}" "$(ab_median <<<"${mbs[direct]}")"
for path in h1 tls h2o; do
  for k in "${!pids[@]}"; do
    printf '%-6s %-12s %-28s %-8s %-28s %s\n' $path "${names[$k]}" "${mbs[$path-$k]}" "$(ab_median <<<"${mbs[$path-$k]}")" "${cpu[$path-$k]}" "$(ab_median <<<"${cpu[$path-$k]}")"
  done
done
