# Shared by scripts/run.sh and scripts/test.sh: installs what is missing, says what it does,
# and stops with advice when a step fails. Source it; don't run it.

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"
BINARYEN_VERSION="132.0.0"
ESBUILD_VERSION="0.28.2"
LIGHTNINGCSS_VERSION="1.33.0"
SQLX_CLI_VERSION="0.9.0"
export PATH="$TOOLS/npm/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# The SQL is checked at compile time against the committed .sqlx/ data, so no database is
# needed to build (see app/src/db/mod.rs).
export SQLX_OFFLINE=true

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
fail() {
  printf '\n\033[31merror:\033[0m %s\n' "$1" >&2
  shift
  for line in "$@"; do printf '       %s\n' "$line" >&2; done
  exit 1
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else fail "'$*' needs root" "Run it as root, or install sudo."
  fi
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null ||
    fail "cannot install $* here: this is not a Debian or Ubuntu machine" \
      "Install $* with your system's package manager, then run this again."
  if [ "$APT_UPDATED" = 0 ]; then
    note "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
      fail "apt-get update failed" "Check the machine's network and apt sources."
    APT_UPDATED=1
  fi
  note "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
    fail "apt-get install $* failed" "Try it by hand to see why."
}

ensure_rust() {
  step "Rust toolchain"
  command -v cargo >/dev/null ||
    fail "cargo not found" "Install Rust with rustup (https://rustup.rs), then run this again."
  note "$(cargo --version)"
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    note "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown || fail "rustup target add failed" "Is rustup installed?"
  fi
}

ensure_build_tools() {
  step "Build tools (wasm-opt $BINARYEN_VERSION, esbuild $ESBUILD_VERSION, lightningcss $LIGHTNINGCSS_VERSION)"
  # cc for ring, make as well for jemalloc's build (decision 016).
  { command -v cc && command -v make; } >/dev/null || apt_install build-essential
  command -v pkg-config >/dev/null || apt_install pkg-config
  # The site is built by `cargo xtask build` (xtask/src/main.rs), which binds the bundle with the
  # wasm-bindgen library itself; cargo-leptos and wasm-bindgen-cli are not needed.
  # The npm tools live in .tools/ so an older system binaryen (Debian's 108 emits WASM that
  # fails to hydrate) is never used.
  local bin="$TOOLS/npm/node_modules/.bin"
  if ! "$bin/wasm-opt" --version 2>/dev/null | grep -q "version ${BINARYEN_VERSION%%.*}" ||
    [ "$("$bin/esbuild" --version 2>/dev/null)" != "$ESBUILD_VERSION" ] ||
    [ "$(node -p "require('$TOOLS/npm/node_modules/lightningcss-cli/package.json').version" 2>/dev/null)" != "$LIGHTNINGCSS_VERSION" ]; then
    command -v npm >/dev/null || apt_install nodejs npm
    note "installing binaryen@$BINARYEN_VERSION, esbuild@$ESBUILD_VERSION and lightningcss-cli@$LIGHTNINGCSS_VERSION into .tools/npm"
    mkdir -p "$TOOLS/npm"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS/npm" "binaryen@$BINARYEN_VERSION" \
      "esbuild@$ESBUILD_VERSION" "lightningcss-cli@$LIGHTNINGCSS_VERSION" ||
      fail "npm install of the build tools failed" "Check that npm can reach its registry."
  fi
  note "$(wasm-opt --version); esbuild $("$bin/esbuild" --version)"
}

ensure_sqlx_cli() {
  step "sqlx-cli $SQLX_CLI_VERSION (checks that .sqlx/ matches the queries)"
  if [ "$(sqlx --version 2>/dev/null | awk '{print $2}')" != "$SQLX_CLI_VERSION" ]; then
    note "building sqlx-cli $SQLX_CLI_VERSION (Postgres only): about 4 minutes, once"
    cargo install sqlx-cli --locked --version "$SQLX_CLI_VERSION" --no-default-features \
      --features postgres,rustls ||
      fail "cargo install sqlx-cli failed" "See the compiler output above."
  else
    note "sqlx-cli $SQLX_CLI_VERSION is installed"
  fi
}

# schemathesis (PyPI) in its own venv under .tools/, for the fault suite's HTTP fuzzing.
SCHEMATHESIS_VERSION="4.32.5"
ensure_schemathesis() {
  step "schemathesis $SCHEMATHESIS_VERSION (bad inputs against /api/openapi.json)"
  if [ "$("$TOOLS/schemathesis/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
    command -v python3 >/dev/null || apt_install python3
    python3 -m venv "$TOOLS/schemathesis" 2>/dev/null || apt_install python3-venv
    [ -x "$TOOLS/schemathesis/bin/pip" ] || python3 -m venv "$TOOLS/schemathesis"
    "$TOOLS/schemathesis/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION" ||
      fail "pip install schemathesis failed" "Check that pip can reach PyPI."
  fi
  note "$("$TOOLS/schemathesis/bin/schemathesis" --version)"
}

MOTO_VERSION="5.2.5"
# The S3-compatible server the storage tests start (issue 13): moto's server mode, which speaks
# the S3 protocol over HTTP (signed requests, multipart uploads), in a virtualenv under .tools/.
ensure_moto() {
  step "moto $MOTO_VERSION (an S3-compatible server for the storage tests)"
  if [ "$("$TOOLS/moto/bin/pip" show moto 2>/dev/null | awk '/^Version:/ {print $2}')" != "$MOTO_VERSION" ] ||
    [ ! -x "$TOOLS/moto/bin/moto_server" ]; then
    command -v python3 >/dev/null || apt_install python3
    python3 -m venv "$TOOLS/moto" 2>/dev/null || apt_install python3-venv
    [ -x "$TOOLS/moto/bin/pip" ] || python3 -m venv "$TOOLS/moto"
    "$TOOLS/moto/bin/pip" install --quiet "moto[server]==$MOTO_VERSION" ||
      fail "pip install moto failed" "Check that pip can reach PyPI."
  fi
  note "moto_server $MOTO_VERSION in $TOOLS/moto"
}

# Directory holding initdb and postgres, or nothing.
postgres_bindir() {
  local dir
  if command -v pg_config >/dev/null; then
    dir="$(pg_config --bindir 2>/dev/null || true)"
    if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then echo "$dir"; return; fi
  fi
  if command -v initdb >/dev/null && command -v postgres >/dev/null; then
    dirname "$(command -v initdb)"; return
  fi
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; fi
}

ensure_postgres_binaries() {
  step "Postgres server binaries (for the embedded database)"
  if [ -z "$(postgres_bindir)" ]; then
    apt_install postgresql
  fi
  [ -n "$(postgres_bindir)" ] ||
    fail "no Postgres server binaries after installing" "Install Postgres, or set DATABASE_URL."
  note "$("$(postgres_bindir)/postgres" --version)"
  command -v psql >/dev/null || apt_install postgresql-client
}

# nginx (the reverse-proxy test, server/tests/api/proxy.rs), pgbouncer (the transaction-mode
# pooler test, server/tests/api/supabase.rs) and openssl (the test's self-signed certificate).
# Debian puts nginx and pgbouncer in /usr/sbin, which may not be on PATH.
ensure_proxy_tools() {
  step "nginx, pgbouncer and openssl (the deployment tests)"
  if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    apt_install nginx
  fi
  if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
    apt_install pgbouncer
  fi
  command -v openssl >/dev/null || apt_install openssl
  # The packages start system services of their own; the tests run private copies instead.
  note "$("$(command -v nginx || echo /usr/sbin/nginx)" -v 2>&1)"
}

ensure_ffmpeg() {
  step "ffmpeg and ffprobe (the built-in processor)"
  if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    apt_install ffmpeg
  fi
  command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null ||
    fail "no ffmpeg after installing" "Install ffmpeg (it includes ffprobe), or set ITTYBIT_API_KEY to use Ittybit."
  note "$(ffmpeg -hide_banner -version | head -n 1)"
}

build_release() {
  step "Building the release (server and browser bundle)"
  note "a cold build takes about 8 minutes on two cores; later ones about a minute"
  (cd "$REPO" && cargo xtask build) ||
    fail "the release build failed" "See the compiler output above."
}
