#!/usr/bin/env bash
# The ledger's tests on Citus (docs/scaling.md, "Citus"): `make citus-test`.
#
# Starts the coordinator and workers (citus.sh start), makes the test database itself on every node under the name
# pytest-django gives it (test_<name of DATABASE_URL>), migrates it, distributes the ledger (citus_distribute) and
# runs the ledger's test files against the coordinator with --reuse-db, so pytest-django keeps that database as it
# is instead of creating a plain one without Citus and its workers. The database is made afresh on each run.
#   CITUS_DB (default mengka_citus_ledger): the name; REDIS_URL is passed through; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT=${CITUS_PORT:-5440}
NAME=${CITUS_DB:-mengka_citus_ledger}
case "$NAME" in mengka_citus_*) ;; *) echo "CITUS_DB must start with mengka_citus_" >&2; exit 2 ;; esac
TEST_DB=test_$NAME
# The ledger's own test files: posting, holds, lots, exchange and reversal, expiry, sealing, the check, concurrency,
# the entry counts' migration.
LEDGER_TESTS=(
  tests/rewards/test_ledger_services.py
  tests/rewards/test_ledger_exchange_reversal.py
  tests/rewards/test_ledger_check.py
  tests/rewards/test_ledger_concurrency.py
  tests/rewards/test_ledger_interleavings.py
  tests/rewards/test_ledger_query_counts.py
  tests/rewards/test_citus.py
  tests/rewards/test_entry_count_migration.py
)

scripts/citus/citus.sh start >/dev/null
for port in "$PORT" $((PORT + 1)) $((PORT + 2)); do
  psql -h 127.0.0.1 -p "$port" -U postgres -qAtc "DROP DATABASE IF EXISTS \"$TEST_DB\" WITH (FORCE)" 2>/dev/null
done
scripts/citus/citus.sh createdb "$TEST_DB" 2>/dev/null
DATABASE_URL=postgres://postgres@127.0.0.1:$PORT/$TEST_DB .venv/bin/python manage.py migrate --noinput -v0
DATABASE_URL=postgres://postgres@127.0.0.1:$PORT/$TEST_DB .venv/bin/python manage.py citus_distribute
DATABASE_URL=postgres://postgres@127.0.0.1:$PORT/$NAME LEDGER_DISTRIBUTED=1 \
  .venv/bin/pytest "${LEDGER_TESTS[@]}" --reuse-db -q -p no:cacheprovider "$@"
