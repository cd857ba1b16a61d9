#!/usr/bin/env bash
# The whole Heimdall test suite. Installs by itself what the tests need, then runs:
# format and lint checks, every crate's tests (WAL crash matrix, torn tails, kill -9,
# model tests on both I/O backends; end-to-end tests of the real binary), and a short
# fuzz run of every fuzz target.
#
# Environment knobs:
#   FUZZ_SECONDS=30          seconds per fuzz target (0 skips fuzzing)
#   FUZZ_RUNS=               executions per fuzz target instead (long mode: 10000000)
#   HEIMDALL_CRASH_POINTS=48 crash points of the engine crash test (long mode: all)
#   HEIMDALL_KILL9_ROUNDS=25 kill -9 rounds per backend (long mode: 1000)
#   HEIMDALL_KAFKA_KILL9_ROUNDS=20 kill -9 rounds of the Kafka source test
#   HEIMDALL_OBJSTORE_KILL9_ROUNDS=6 kill -9 rounds during segment uploads
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

step "Python clients and servers for the server tests (venv: pyarrow, grpcio, grpcio-tools, prometheus_client, kafka-python, moto[server] with boto3)"
# Real clients no one here wrote, pinned, in a venv outside the clone (reused when
# it already holds them).
VENV="${HEIMDALL_TEST_VENV:-$HOME/.cache/heimdall-test-venv}"
PY_REQS="pyarrow==26.0.1 grpcio==1.85.3 grpcio-tools==1.85.1 prometheus_client==0.26.0 kafka-python==3.0.12 moto[server]==5.2.5 boto3==1.44.8"
if ! "$VENV/bin/python" -c "import pyarrow.flight, grpc, grpc_tools, prometheus_client, kafka, moto.server, flask, boto3" 2>/dev/null; then
  command -v python3 >/dev/null || { echo "python3 is required for the server tests" >&2; exit 1; }
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 lacks ensurepip until python3-venv is installed.
    if command -v apt-get >/dev/null; then
      (apt-get update -qq && apt-get install -y -qq python3-venv) || sudo sh -c 'apt-get update -qq && apt-get install -y -qq python3-venv'
    fi
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet $PY_REQS
fi
export HEIMDALL_TEST_PYTHON="$VENV/bin/python"
"$HEIMDALL_TEST_PYTHON" -c "import pyarrow, grpc; print('pyarrow', pyarrow.__version__, 'grpcio', grpc.__version__)"

step "Kafka-protocol broker for the Kafka source tests (tansu, from crates.io)"
# Built once (about 13 minutes on 2 cores) into a directory outside the clone and
# reused by later runs.
TOOLS="${HEIMDALL_TOOLS_DIR:-$HOME/.cache/heimdall-tools}"
TANSU_VERSION=0.6.0
if ! "$TOOLS/bin/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore --root "$TOOLS"
fi
export HEIMDALL_TANSU="$TOOLS/bin/tansu"
"$HEIMDALL_TANSU" --version

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
  # FUZZ_RUNS (long mode: 10000000) runs that many executions per target instead.
  if [ -n "${FUZZ_RUNS:-}" ]; then
    step "fuzz (${FUZZ_RUNS} executions per target)"
    limit="-runs=$FUZZ_RUNS"
  else
    step "fuzz (short run: ${FUZZ_SECONDS}s per target)"
    limit="-max_total_time=$FUZZ_SECONDS"
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
  fi
  for target in $(cd fuzz && cargo fuzz list); do
    # The working corpus grows in fuzz/corpus (not kept); read too are the
    # corpora kept in the repository (fuzz/corpora: the long runs' corpora,
    # minimized with `cargo fuzz cmin`) and the hand-made seeds (fuzz/seeds).
    mkdir -p "fuzz/corpus/$target"
    dirs=("corpus/$target")
    for kept in corpora seeds; do
      if [ -d "fuzz/$kept/$target" ]; then dirs+=("$kept/$target"); fi
    done
    (cd fuzz && cargo fuzz run --sanitizer none "$target" "${dirs[@]}" -- "$limit" -rss_limit_mb=2048)
  done
fi

step "all tests passed"
