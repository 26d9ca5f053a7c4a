#!/usr/bin/env bash
# OneFlow in its production shape (gunicorn + uvicorn workers, PostgreSQL,
# Redis, a Celery worker draining usage) in front of ../shared/bench's fake
# upstream, measured beside the direct upstream in one run.
#
#   bench/run.sh [run.py options]    e.g. --scenarios ns_c1,ns_c64,st_c16,ns_c64_d50
#
# Needs: PostgreSQL on 127.0.0.1:5432 (trust, user postgres), Redis on
# 127.0.0.1:6379, wrk, and rustc (or uvicorn) for the fake upstream.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh base
shared_bench="${SHARED_BENCH:-../shared/bench}"
# The load driver and fake upstream still live outside this repository (issue 15
# brings a harness of its own): say so before starting anything.
if [ ! -f "$shared_bench/run.py" ]; then
    echo "bench/run.sh needs the team's bench harness at $shared_bench (set SHARED_BENCH)." >&2
    echo "A clone of this repository alone cannot run it yet; see issue 15." >&2
    exit 2
fi
work="${BENCH_BUILD:-/tmp/oneflow-bench}/oneflow"
mkdir -p "$work"

export ONEFLOW_ENV=production DEBUG=false SECURE_SSL_REDIRECT=false ALLOWED_HOSTS=127.0.0.1,localhost
export SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(64))')"
export JWT_SIGNING_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(64))')"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/oneflow_bench"
export REDIS_URL="redis://127.0.0.1:6379/14"
export PROMETHEUS_MULTIPROC_DIR="$work/prometheus" WEB_CONCURRENCY="${WEB_CONCURRENCY:-2}" LOG_LEVEL=WARNING
# The metrics port (deploy/gunicorn.conf.py) on loopback only: nothing here scrapes from elsewhere.
export METRICS_ADDR=127.0.0.1
# Every process of the run (migrate and seed included) writes its metrics there: it must exist.
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

dropdb -h 127.0.0.1 -U postgres --if-exists oneflow_bench
createdb -h 127.0.0.1 -U postgres oneflow_bench
redis-cli -n 14 flushdb >/dev/null
python manage.py migrate --noinput -v 0
key=$(python bench/seed.py | tail -n 1)

gunicorn -c deploy/gunicorn.conf.py --bind 127.0.0.1:8000 oneflow.asgi:application >"$work/web.log" 2>&1 &
web=$!
celery -A oneflow worker --beat --scheduler django_celery_beat.schedulers:DatabaseScheduler --pool solo --loglevel WARNING >"$work/worker.log" 2>&1 &
worker=$!
trap 'kill $web $worker 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 100); do curl -fs http://127.0.0.1:8000/healthz -H 'Host: localhost' >/dev/null && break; sleep 0.2; done

worker_cpu() { awk '{print $14 + $15 + $16 + $17}' "/proc/$worker/stat"; }
before=$(worker_cpu)
python3 "$shared_bench/run.py" --target "name=oneflow,url=http://127.0.0.1:8000/v1,key=$key,aux=5432:6379" "$@"
after=$(worker_cpu)
for pid in $(pgrep -P "$web"); do
    echo "gunicorn worker $pid peak RSS: $(awk '/VmHWM/ {printf "%.0f MB", $2 / 1024}' "/proc/$pid/status")"
done
rows=$(psql -h 127.0.0.1 -U postgres -d oneflow_bench -tAc "select count(*) from billing_usageevent")
echo "celery worker (usage drain) CPU seconds during the run: $(( (after - before) / $(getconf CLK_TCK) ))" \
    "(not in the table's gateway CPU); usage events stored: $rows"
