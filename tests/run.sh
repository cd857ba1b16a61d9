#!/usr/bin/env bash
# The whole Heimdall test suite. Installs by itself what the tests need, then runs:
# format and lint checks, every crate's tests (WAL crash matrix, torn tails, kill -9,
# model tests on both I/O backends; end-to-end tests of the real binary), and a short
# fuzz run of every fuzz target.
#
# Environment knobs:
#   FUZZ_SECONDS=30          seconds per fuzz target (0 skips fuzzing)
#   HEIMDALL_KILL9_ROUNDS=25 kill -9 rounds per backend (long mode: 1000)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
cargo --version
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
if ! command -v dd >/dev/null; then
  echo "dd (coreutils) is required by the benchmark tool" >&2
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build (the e2e tests run the real heimdall binary)"
cargo build --workspace --all-targets --locked

step "tests"
cargo test --workspace --locked --no-fail-fast

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
if [ "$FUZZ_SECONDS" != "0" ]; then
  step "fuzz (short run: ${FUZZ_SECONDS}s per target)"
  if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
  fi
  for target in $(cd fuzz && cargo fuzz list); do
    (cd fuzz && cargo fuzz run --sanitizer none "$target" -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048)
  done
fi

step "all tests passed"
