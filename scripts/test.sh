#!/usr/bin/env bash
# Command two: install what is missing, then run every check: formatting, clippy for the
# server and the wasm target, unit and integration tests, and the browser tests.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_rust
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done
ensure_build_tools
ensure_sqlx_cli
ensure_postgres_binaries
ensure_ffmpeg
ensure_proxy_tools
ensure_schemathesis
ensure_moto

step "Chromium and the browser-test packages"
if ! command -v "${CHROMIUM_PATH:-/usr/bin/chromium}" >/dev/null; then
  apt_install chromium
fi
note "$("${CHROMIUM_PATH:-/usr/bin/chromium}" --version 2>/dev/null || echo chromium)"
command -v npm >/dev/null || apt_install nodejs npm
(cd "$REPO/end2end" && npm ci --silent --no-audit --no-fund) ||
  fail "npm ci in end2end/ failed" "Check that npm can reach its registry."

step "A Postgres for the integration tests"
TEST_PG_DIR=""
stop_test_pg() {
  if [ -n "$TEST_PG_DIR" ]; then
    note "stopping the test Postgres in $TEST_PG_DIR"
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$(postgres_bindir)/pg_ctl" -D "$TEST_PG_DIR" -m fast stop >/dev/null || true
    else "$(postgres_bindir)/pg_ctl" -D "$TEST_PG_DIR" -m fast stop >/dev/null || true; fi
    rm -rf "$TEST_PG_DIR"
  fi
}
trap stop_test_pg EXIT
if [ -n "${DATABASE_URL:-}" ]; then
  note "using DATABASE_URL"
elif pg_isready -q -h 127.0.0.1 -p 5432 -U postgres; then
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
  note "using the Postgres on 127.0.0.1:5432"
else
  # No server to test against: start a private, throwaway one.
  TEST_PG_DIR="$(mktemp -d /tmp/reeltime-test-pg.XXXXXX)"
  chmod 755 "$TEST_PG_DIR"
  PG_PORT=55432
  run_pg() {
    if [ "$(id -u)" = 0 ]; then chown postgres: "$TEST_PG_DIR"; runuser -u postgres -- "$@"
    else "$@"; fi
  }
  note "starting a throwaway Postgres on 127.0.0.1:$PG_PORT"
  run_pg "$(postgres_bindir)/initdb" -D "$TEST_PG_DIR/data" -U postgres -A trust --locale=C >/dev/null ||
    fail "initdb for the test Postgres failed"
  run_pg "$(postgres_bindir)/pg_ctl" -D "$TEST_PG_DIR/data" -l "$TEST_PG_DIR/log" -w \
    -o "-h 127.0.0.1 -p $PG_PORT -k $TEST_PG_DIR -c max_connections=300 -c fsync=off" start >/dev/null ||
    fail "the test Postgres did not start" "Its log: $TEST_PG_DIR/log"
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
fi

cd "$REPO"
step "cargo fmt --check"
cargo fmt --all -- --check || fail "formatting differs" "Run: cargo fmt --all"

step "Checked SQL: .sqlx/ matches the queries and the migrations"
# A scratch database with the migrations applied; the macros are re-run against it and their
# answers compared with the committed .sqlx/ files.
SQLX_DB="reeltime_sqlx_check_$$"
SQLX_URL="${DATABASE_URL%%\?*}"
SQLX_QUERY=""
[ "$SQLX_URL" != "$DATABASE_URL" ] && SQLX_QUERY="?${DATABASE_URL#*\?}"
SQLX_URL="${SQLX_URL%/*}/$SQLX_DB$SQLX_QUERY"
psql "$DATABASE_URL" -qc "create database $SQLX_DB" >/dev/null ||
  fail "could not create a scratch database for the SQL check"
drop_sqlx_db() { psql "$DATABASE_URL" -qc "drop database if exists $SQLX_DB with (force)" >/dev/null 2>&1 || true; }
sqlx_check() {
  DATABASE_URL="$SQLX_URL" sqlx migrate run --source migrations >/dev/null &&
    DATABASE_URL="$SQLX_URL" SQLX_OFFLINE=false cargo sqlx prepare --workspace --check -- \
      --all-targets -p reeltime -p app -p server -p bench
}
if ! sqlx_check; then
  drop_sqlx_db
  fail ".sqlx/ is stale: a query or a migration changed without it" \
    "Run: DATABASE_URL=<a migrated database> cargo sqlx prepare --workspace -- --all-targets -p reeltime -p app -p server -p bench"
fi
drop_sqlx_db

step "cargo clippy (server, -D warnings)"
cargo clippy --locked -p reeltime -p app -p server -p bench -p xtask --all-targets -- -D warnings ||
  fail "clippy found problems in the server build"

step "cargo clippy (wasm32 browser bundle, -D warnings)"
cargo clippy --locked -p reeltime -p app -p frontend --target wasm32-unknown-unknown --features app/hydrate -- -D warnings ||
  fail "clippy found problems in the browser build"

step "Unit and integration tests (cargo test)"
cargo test --locked -p reeltime -p app -p server -p xtask 2>&1 | tee "$REPO/target/cargo-test.log"
[ "${PIPESTATUS[0]}" = 0 ] || fail "cargo test failed" "See the failures above."

build_release

step "Browser tests (Playwright driving Chromium against the release server)"
(cd "$REPO/end2end" && npm test 2>&1 | tee "$REPO/target/end2end.log"; exit "${PIPESTATUS[0]}") ||
  fail "the browser tests failed" "See the failures above."

step "Fault suite, short form (cargo run --release -p bench -- chaos; docs/reliability.md)"
# Its own Postgres cluster, against the release server. The suite itself is built in the debug
# profile, on what the tests already built (seconds, where a release build of it takes
# minutes); the full form (cargo run --release -p bench -- chaos --full) is run by hand.
cargo build --locked -p bench ||
  fail "building the fault suite failed" "See the compiler output above."
"$REPO/target/debug/bench" chaos 2>&1 | tee "$REPO/target/chaos.log"
[ "${PIPESTATUS[0]}" = 0 ] || fail "the fault suite failed" "See target/chaos.log; each scenario says what was lost."

step "Summary"
grep -E '^test result:' "$REPO/target/cargo-test.log" | grep -v ' 0 passed' | sed 's/^/    cargo: /'
grep -E '^# (tests|pass|fail)' "$REPO/target/end2end.log" | sed 's/^/    end2end: /'
grep -E '^[0-9]+ scenarios' "$REPO/target/chaos.log" | sed 's/^/    chaos: /'
passed=$(cat "$REPO/target/cargo-test.log" "$REPO/target/end2end.log" |
  awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^passed/) n += $i } /^# pass / { n += $3 } END { print n + 0 }')
failed=$(cat "$REPO/target/cargo-test.log" "$REPO/target/end2end.log" |
  awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^failed/) n += $i } /^# fail / { n += $3 } END { print n + 0 }')
echo "All checks passed."
echo "$passed passed, $failed failed"
