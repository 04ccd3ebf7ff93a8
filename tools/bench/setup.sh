#!/usr/bin/env bash
# Installs the peers and load tools `deno task bench` measures with (Debian/Ubuntu, run as root):
# wrk, etcd (server and client), redis (server and redis-benchmark) and util-linux (taskset).
# Deno itself comes from npm: `npx -y deno@2.9.6 task bench`.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "run as root (apt-get install)" >&2
  exit 1
fi
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y wrk etcd-server etcd-client redis-server redis-tools util-linux
for tool in wrk etcd redis-server redis-benchmark taskset; do
  printf '%-16s %s\n' "$tool" "$(command -v "$tool" || echo MISSING)"
done
