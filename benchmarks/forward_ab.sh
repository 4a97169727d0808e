#!/usr/bin/env bash
# A/B of the forward proxy, /1k (absolute form, wrk 2 threads x 50 connections) through three nodes started side by side and
# measured in interleaved rounds: BEFORE (an earlier rama-node), AFTER with its defaults, AFTER with server GC.
# Usage: benchmarks/forward_ab.sh <before rama-node> <after rama-node>   (DUR=seconds per round, ROUNDS=n)
# Interleaved rounds; each node started fresh per config and kept for all rounds.
set -euo pipefail
BEFORE=${1:?before rama-node}
AFTER=${2:?after rama-node}
W=$(mktemp -d /tmp/rama-forward-ab.XXXX); mkdir -p $W/www $W/tmp; head -c 1024 /dev/urandom > $W/www/1k; chmod 777 $W $W/tmp; chmod 755 $W/www; chmod 644 $W/www/1k
P=$(( 33000 + RANDOM % 20000 )); O=$P; S=$((P+1)); B=$((P+2)); A=$((P+3)); T=$((P+4))
cat > $W/nginx.conf <<NG
worker_processes 1; daemon off; pid $W/nginx.pid; error_log $W/err.log;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/tmp; proxy_temp_path $W/tmp; fastcgi_temp_path $W/tmp; uwsgi_temp_path $W/tmp; scgi_temp_path $W/tmp;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$O; root $W/www; }
  server { listen 127.0.0.1:$S; access_log $W/sink.log; client_max_body_size 0; location / { client_body_in_single_buffer off; return 200 ""; } } }
NG
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; sleep 0.5; for p in "${PIDS[@]}"; do kill -9 $p 2>/dev/null || true; done; }
trap cleanup EXIT
/usr/sbin/nginx -c $W/nginx.conf -p $W & PIDS+=($!)
export DOTNET_TieredPGO=1
$BEFORE --listen 127.0.0.1:$B --access-log stdout --admin 127.0.0.1:0 > $W/before.log 2>&1 & PIDS+=($!); PB=$!
$AFTER --listen 127.0.0.1:$A --access-log stdout --admin 127.0.0.1:0 > $W/after.log 2>&1 & PIDS+=($!); PA=$!
DOTNET_gcServer=1 $AFTER --listen 127.0.0.1:$T --access-log stdout --admin 127.0.0.1:0 > $W/traced.log 2>&1 & PIDS+=($!); PT=$!
for p in $B $A $T $O; do for i in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.2; done; done
printf 'wrk.path = "http://127.0.0.1:%s/1k"\nwrk.headers["Host"] = "127.0.0.1:%s"\n' $O $O > $W/abs.lua
DUR=${DUR:-10}; ROUNDS=${ROUNDS:-3}
for r in $(seq $ROUNDS); do
  for cfg in before:$B:$PB after-default:$A:$PA after-servergc:$T:$PT; do
    IFS=: read name port pid <<< "$cfg"
    wrk -t2 -c50 -d2s -s $W/abs.lua http://127.0.0.1:$port/ > /dev/null   # warm-up
    c0=$(awk '{print $14+$15}' /proc/$pid/stat)
    out=$(wrk -t2 -c50 -d${DUR}s -s $W/abs.lua http://127.0.0.1:$port/)
    c1=$(awk '{print $14+$15}' /proc/$pid/stat)
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}'); n=$(echo "$out" | awk '/requests in/ {print $1}')
    echo "round $r $name rps=$rps cpu_us_per_req=$(awk -v t=$((c1-c0)) -v n=$n 'BEGIN{printf "%.1f", t*10000/n}')"
  done
done
