#!/usr/bin/env bash
# Rama MITM vs mitmproxy (mitmdump) on the same requests, on loopback.
#   benchmarks/mitm-compare.sh            (builds nothing: run `dotnet build -c Release Rama.Node` first)
# Origin: rama-node --echo-listen over TLS with a throw-away CA; both proxies trust that CA for the origin.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
node="dotnet Rama.Node/bin/Release/net10.0/rama-node.dll"
[ -f Rama.Node/bin/Release/net10.0/rama-node.dll ] || node="dotnet Rama.Node/bin/Debug/net10.0/rama-node.dll"

# a test CA and a localhost leaf for the origin
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" -days 2 -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/leaf.key" -out "$work/leaf.csr" -subj "/CN=localhost" 2>/dev/null
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 2 -out "$work/leaf.pem" \
  -extfile <(printf "subjectAltName=DNS:localhost,IP:127.0.0.1") 2>/dev/null

ORIGIN=18601 RAMA=18602 MITM=18603
$node --listen 127.0.0.1:18600 --echo-listen 127.0.0.1:$ORIGIN --cert "$work/leaf.pem" --key "$work/leaf.key" >"$work/origin.log" 2>&1 &
$node --listen 127.0.0.1:$RAMA --mitm --mitm-ca-dir "$work/rama-ca" --mitm-upstream-ca "$work/ca.pem" >"$work/rama.log" 2>&1 &
mitmdump -q --listen-host 127.0.0.1 --listen-port $MITM --set confdir="$work/mitm" --set ssl_verify_upstream_trusted_ca="$work/ca.pem" >"$work/mitm.log" 2>&1 &
for port in $ORIGIN $RAMA $MITM; do for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done; done
sleep 1
rama_ca="$work/rama-ca/rama-ca.pem"; mitm_ca="$work/mitm/mitmproxy-ca-cert.pem"
url="https://localhost:$ORIGIN/bench"

run() { # name port ca
  local name=$1 port=$2 ca=$3
  curl -sS -o /dev/null --proxy http://127.0.0.1:$port --cacert "$ca" "$url" # warm-up (mints the leaf)
  local t0 t1 t2 t3
  t0=$(date +%s.%N)
  for _ in $(seq 200); do curl -sS -o /dev/null --proxy http://127.0.0.1:$port --cacert "$ca" "$url"; done
  t1=$(date +%s.%N)
  # keep-alive: 8 curl processes x 250 requests on one tunnel each
  urls=$(for _ in $(seq 250); do printf '%s ' "$url"; done)
  t2=$(date +%s.%N)
  local pids=()
  for _ in $(seq 8); do curl -sS -o /dev/null --proxy http://127.0.0.1:$port --cacert "$ca" $urls >/dev/null & pids+=($!); done
  wait "${pids[@]}"
  t3=$(date +%s.%N)
  printf '| %s | %.0f | %.1f | %.0f |\n' "$name" "$(echo "200/($t1-$t0)" | bc -l)" "$(echo "($t1-$t0)*1000/200" | bc -l)" "$(echo "2000/($t3-$t2)" | bc -l)"
}
echo "| proxy | new tunnel per request (req/s, curl process each) | ms per request | keep-alive 8x250 (req/s) |"
echo "| --- | --- | --- | --- |"
run rama $RAMA "$rama_ca"
run mitmproxy $MITM "$mitm_ca"
grep -c "MITM 127.0.0.1\|MITM localhost" "$work/rama.log" | sed 's/^/rama decrypted-request log lines: /'
