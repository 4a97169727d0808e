#!/usr/bin/env bash
# Runs every test of the repository on a fresh Debian machine: installs the real peers the tests
# drive (curl, ...), builds, then runs unit, functional and integration tests. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")"

# Real clients and peers the tests use (Debian package : command).
peers=(curl:curl nginx:nginx docker-compose:docker-compose python3:python3 wrk:wrk chromium:chromium microsocks:microsocks dante-server:danted tinyproxy:tinyproxy squid:squid openssl:openssl haproxy:haproxy tshark:tshark nghttp2-client:h2load prometheus:prometheus)
missing=()
for entry in "${peers[@]}"; do
  command -v "${entry#*:}" >/dev/null 2>&1 || [ -x "/usr/sbin/${entry#*:}" ] || missing+=("${entry%%:*}")
done
# Python modules the WebSocket and gRPC tests drive (Debian's, loaded by /usr/bin/python3).
for entry in python3-websockets:websockets python3-grpcio:grpc; do
  /usr/bin/python3 -c "import ${entry#*:}" >/dev/null 2>&1 || missing+=("${entry%%:*}")
done
if ((${#missing[@]})); then
  echo "==> installing test peers: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "==> build"
dotnet build Rama.sln -c Debug -nologo -clp:ErrorsOnly

# One test project at a time: the machine has 2 cores and the integration tests time real transfers.
status=0
for project in tests/Rama.Admin.Tests tests/Rama.Actors.Tests tests/Rama.Proxy.Tests tests/Rama.IntegrationTests; do
  echo "==> test $project"
  dotnet test "$project" -c Debug --no-build -nologo --logger "console;verbosity=normal" --blame-hang-timeout 5m || status=1
done
exit $status
