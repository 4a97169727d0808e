# Sourced by the side-by-side HTTP/2 scripts (h2_ab.sh, h2_bulk_ab.sh) and by benchmarks/run (proc_cpu): a work dir and
# the processes started for it, reaped on exit; a certificate; the nginx origin; nodes from name=rama-node[:VAR=value,...].

ab_setup() { # prefix -> W (www/ and tmp/ in it, h2.crt, h2.key, h2.pem), P (the origin's port), PIDS; all reaped on exit
  W=$(mktemp -d "/tmp/$1.XXXX"); mkdir -p "$W/www" "$W/tmp"; chmod 777 "$W/tmp"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost -keyout "$W/h2.key" -out "$W/h2.crt" 2>/dev/null
  cat "$W/h2.crt" "$W/h2.key" > "$W/h2.pem"
  P=$(( 20000 + RANDOM % 10000 ))   # below the ephemeral range: an outgoing connection cannot hold these ports
  PIDS=()
  trap ab_cleanup EXIT
}

ab_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$W"
}

ab_origin() { # [more listen directives] -> nginx serving $W/www over HTTP/1.1 on 127.0.0.1:$P (and what the directives add)
  chmod a+rX "$W"; chmod -R a+rX "$W/www"
  cat > "$W/nginx.conf" <<NG
worker_processes 2; daemon off; pid $W/nginx.pid; error_log $W/err.log; worker_rlimit_nofile 20000;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/tmp; proxy_temp_path $W/tmp; fastcgi_temp_path $W/tmp; uwsgi_temp_path $W/tmp; scgi_temp_path $W/tmp;
  keepalive_timeout 600s; keepalive_requests 10000000; tcp_nodelay on; sendfile on;
  server { listen 127.0.0.1:$P backlog=4096; ${1:-} root $W/www; } }
NG
  /usr/sbin/nginx -c "$W/nginx.conf" -p "$W" > "$W/nginx.out" 2>&1 & PIDS+=($!)
}

ab_node() { # name=rama-node[:VAR=value,...] base [more node arguments] -> AB_NAME, AB_PID: a node with --listen on base, an h2c
  #          reverse listener on base+1 to the origin, a TLS listener in HTTP mode on base+2 to the origin
  local conf=$1 b=$2; shift 2
  AB_NAME=${conf%%=*}
  local rest=${conf#*=} bin envs=()
  bin=${rest%%:*}
  [ "$rest" != "$bin" ] && IFS=, read -ra envs <<<"${rest#*:}"
  env DOTNET_TieredPGO=1 Rama__Tls__UpstreamMode=http "${envs[@]}" "$bin" --admin 127.0.0.1:0 --listen "127.0.0.1:$b" \
    --reverse "127.0.0.1:$((b + 1))=127.0.0.1:$P" --tls-listen "127.0.0.1:$((b + 2))" --upstream "127.0.0.1:$P" \
    --cert "$W/h2.crt" --key "$W/h2.key" "$@" > "$W/$AB_NAME.out" 2>&1 &
  AB_PID=$!; PIDS+=($!)
}

proc_cpu() { # pid -> clock ticks (getconf CLK_TCK a second) of utime+stime of the process and its children (nginx's workers)
  local t=0 p v
  for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null); t=$((t + ${v:-0}))
  done
  echo "$t"
}

ab_median() { # numbers separated by spaces or lines on stdin -> their median
  tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
