#!/usr/bin/env bash
# The long torture run (docs/reliability.md): the whole suite with every torture
# knob in long mode. Installs what it needs like tests/run.sh (it runs it). Takes
# hours on 2 cores; figures go to docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export HEIMDALL_CRASH_POINTS="${HEIMDALL_CRASH_POINTS:-all}"          # engine crash test: every point
export HEIMDALL_TORTURE_ROUNDS="${HEIMDALL_TORTURE_ROUNDS:-1000}"      # kill -9 during flush/compaction/offload
export HEIMDALL_KILL9_ROUNDS="${HEIMDALL_KILL9_ROUNDS:-1000}"          # WAL kill -9 per backend
export HEIMDALL_SERVER_KILL9_ROUNDS="${HEIMDALL_SERVER_KILL9_ROUNDS:-1000}"
export HEIMDALL_KAFKA_KILL9_ROUNDS="${HEIMDALL_KAFKA_KILL9_ROUNDS:-200}"
export HEIMDALL_OBJSTORE_KILL9_ROUNDS="${HEIMDALL_OBJSTORE_KILL9_ROUNDS:-100}"
export FUZZ_RUNS="${FUZZ_RUNS:-10000000}"                              # executions per fuzz target
exec ./tests/run.sh
