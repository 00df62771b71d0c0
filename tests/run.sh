#!/usr/bin/env bash
# The one test command: installs what the suite needs, starts a throw-away PostgreSQL and
# Redis, runs the whole suite on PostgreSQL and again on SQLite, runs ruff, and cleans up.
#
#   bash tests/run.sh [pytest args...]
#   HUB_TEST_BACKENDS=sqlite bash tests/run.sh tests/fhir -x
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BACKENDS=${HUB_TEST_BACKENDS:-"postgresql sqlite"}
export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  as_root apt-get install -y -qq "$@" >/dev/null
}

# --- system packages -------------------------------------------------------------------------
pg_bin_dir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}
if [[ " $BACKENDS " == *" postgresql "* ]] && [ -z "$(pg_bin_dir)" ]; then
  echo "== installing postgresql"
  apt_install postgresql
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server"
  apt_install redis-server
fi
# Debian's Chromium for the dashboard's browser tests (tests/ui, driven by Playwright, which
# cannot download a browser of its own here), and a CJK font so their screenshots show Chinese.
if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s fonts-wqy-microhei >/dev/null 2>&1; then
  echo "== installing chromium"
  apt_install chromium fonts-wqy-microhei
fi

# --- Python environment ----------------------------------------------------------------------
PY=python3.11
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    echo "== installing python3-venv"
    apt_install python3-venv || apt_install python3.11-venv
    "$PY" -m venv .venv
  fi
fi
echo "== installing Python packages"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# --- throw-away servers ----------------------------------------------------------------------
WORK=$(mktemp -d /tmp/hub-test.XXXXXX)
chmod 755 "$WORK"
PG_DATA="$WORK/pg"
PG_BIN=""
PG_STARTED=0
REDIS_PID_FILE="$WORK/redis.pid"

cleanup() {
  set +e
  if [ "$PG_STARTED" -eq 1 ]; then
    run_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1
  fi
  if [ -f "$REDIS_PID_FILE" ]; then
    kill "$(cat "$REDIS_PID_FILE")" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
  local port=$1
  while (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

run_pg() {
  # PostgreSQL refuses to run as root: use its own account.
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [[ " $BACKENDS " == *" postgresql "* ]]; then
  PG_BIN=$(pg_bin_dir)
  PG_PORT=$(free_port 55432)
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$WORK" postgres
    chown postgres "$WORK"
  fi
  run_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  run_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$WORK/pg.log" -w -t 60 start -o \
    "-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=500 \
     -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null ||
    { cat "$WORK/pg.log"; exit 1; }
  PG_STARTED=1
  run_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres hub_test
  echo "== PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on port $PG_PORT"
fi

REDIS_PORT=$(free_port 56379)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize yes --pidfile "$REDIS_PID_FILE" --logfile "$WORK/redis.log" --dir "$WORK"
for _ in $(seq 1 50); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$REDIS_PORT" ping >/dev/null || { cat "$WORK/redis.log"; exit 1; }
echo "== Redis on port $REDIS_PORT"
export HUB_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

# --- the suite -------------------------------------------------------------------------------
echo "== ruff"
RUFF_STATUS=0
.venv/bin/ruff check hub adapters tests || RUFF_STATUS=$?
.venv/bin/ruff format --check --quiet hub adapters tests || RUFF_STATUS=$?

declare -A RESULTS
STATUS=$RUFF_STATUS
for backend in $BACKENDS; do
  if [ "$backend" = postgresql ]; then
    export HUB_TEST_DB_URL="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/hub_test"
  else
    export HUB_TEST_DB_URL=sqlite
  fi
  echo "== pytest on $backend"
  set +e
  (cd "$ROOT" && .venv/bin/python -m pytest -q -p no:cacheprovider "$@") 2>&1 |
    tee "$WORK/pytest-$backend.log"
  code=${PIPESTATUS[0]}
  set -e
  RESULTS[$backend]=$code
  [ "$code" -ne 0 ] && STATUS=$code
done

echo "== summary"
echo "ruff: $([ "$RUFF_STATUS" -eq 0 ] && echo ok || echo FAILED)"
for backend in $BACKENDS; do
  echo "pytest on $backend: $([ "${RESULTS[$backend]}" -eq 0 ] && echo passed || echo "FAILED (exit ${RESULTS[$backend]})")"
done
# One closing line for CI: the counts of both backends together.
PASSED=0
FAILED=0
for backend in $BACKENDS; do
  line=$(grep -E '(passed|failed|error)' "$WORK/pytest-$backend.log" | tail -n 1 || true)
  p=$(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
  f=$( (echo "$line" | grep -oE '[0-9]+ (failed|errors?)' || true) | awk '{s += $1} END {print s + 0}')
  PASSED=$((PASSED + ${p:-0}))
  FAILED=$((FAILED + ${f:-0}))
done
if [ "$PASSED" -eq 0 ] && [ "$STATUS" -eq 0 ]; then
  echo "no test ran" >&2
  STATUS=1
fi
echo "tests: $PASSED passed, $FAILED failed"
exit "$STATUS"
