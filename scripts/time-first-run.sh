#!/usr/bin/env bash
# Times README command one as a newcomer meets it: a clean clone of HEAD (no target/, no
# .tools/) and an empty cargo home (every crate downloaded and compiled), then ./scripts/run.sh
# until /login answers. Prints the total and the build's own phase lines, then stops the server.
# Debian packages already installed (Postgres, ffmpeg) are used as they are. Takes ~20 minutes
# on two cores; a benchmark (docs/benchmarks.md), not part of the test command.
set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d /tmp/reeltime-first-run.XXXXXX)"
PORT="${REELTIME_PORT:-3999}"
git clone -q "$REPO" "$WORK/clone"
mkdir -p "$WORK/cargo-home"
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="$WORK/cargo-home" REELTIME_PORT="$PORT"
unset DATABASE_URL
cd "$WORK/clone"
start=$(date +%s)
./scripts/run.sh >"$WORK/run.log" 2>&1 &
pid=$!
code=000
while kill -0 "$pid" 2>/dev/null; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/login" || true)
  [ "$code" = 200 ] && break
  sleep 2
done
echo "clean clone to dashboard served: $(($(date +%s) - start)) s (GET /login: $code)"
grep -E "site built in|done in|Finished" "$WORK/run.log"
kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
echo "log and clone kept in $WORK"
