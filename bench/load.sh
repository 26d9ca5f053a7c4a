#!/usr/bin/env bash
# The load harness in one command, from a clean clone (docs/performance.md):
#
#   bench/load.sh steady --rate 1000 --duration 600
#   bench/load.sh spike | soak | closed | selfcheck [options]      (bench/load.sh --help)
#
# Installs the locked dev dependencies into .venv when needed (matplotlib draws the plot),
# starts this machine's PostgreSQL and Redis if they are not running, as .ci/run does,
# then runs python -m bench.load. Results go to bench/results/; logs and raw records to
# $BENCH_BUILD (default /tmp/oneflow-load).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh dev

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
for _ in $(seq 60); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
for _ in $(seq 60); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done

exec python -m bench.load "$@"
