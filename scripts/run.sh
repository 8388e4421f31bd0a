#!/usr/bin/env bash
# Command one: install what is missing, build the release, and run the dashboard.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_rust
ensure_build_tools
ensure_postgres_binaries
ensure_ffmpeg
build_release

export LEPTOS_SITE_ROOT="${LEPTOS_SITE_ROOT:-$REPO/target/site}"
export REELTIME_PORT="${REELTIME_PORT:-3000}"
if [ -z "${DATABASE_URL:-}" ] && [ -z "${REELTIME_DATA_DIR:-}" ]; then
  export REELTIME_DATA_DIR="$REPO/.reeltime"
  # As root, the embedded Postgres runs as the postgres user, which must reach the data dir.
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 &&
    ! runuser -u postgres -- test -x "$REPO" 2>/dev/null; then
    export REELTIME_DATA_DIR=/var/lib/reeltime
    note "the postgres user cannot reach $REPO: keeping data in $REELTIME_DATA_DIR instead"
  fi
fi

step "Starting Reeltime (Ctrl-C stops it)"
if [ -z "${DATABASE_URL:-}" ]; then
  note "database: embedded Postgres in $REELTIME_DATA_DIR/postgres"
else
  note "database: DATABASE_URL"
fi
cd "$REPO"
exec "$REPO/target/release/reeltime"
