#!/usr/bin/env bash
# Overload at 3x the sustainable ingest rate, with a memory budget (docs/reliability.md,
# docs/benchmarks.md). One release server with `backlog_bytes_max` = BUDGET_MIB
# (64 MiB by default) and 16 MiB memtables; ingest-load from the same 2 cores:
#   1. sustainable: CLIENTS clients (12) flat out for SECONDS s, more than the
#      server takes (it pushes some back); what it takes with its backlog within
#      budget is the sustainable rate R (lines/s);
#   2. overload: 3 x R offered for SECONDS s by 3 x CLIENTS paced clients, one JSON
#      line a second (lines taken, pushbacks, server RSS); `attempted_lines_per_s`
#      is what reached the server, refused sends included;
#   3. after: flat out again as in 1, the rate must be back.
# Each phase prints ingest-load's JSON report; the timeline goes to stderr.
#
#   cargo build --release -p heimdall-server -p heimdall-benches
#   benches/scripts/overload-bench.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
W="${W:-/tmp/overload-bench}"
BIN=target/release
CLIENTS="${CLIENTS:-12}"
SECONDS_EACH="${SECONDS_EACH:-20}"
BUDGET_MIB="${BUDGET_MIB:-64}"
rm -rf "$W" && mkdir -p "$W"
"$BIN/heimdall-gen" --lines 400000 --seed 1 --out "$W/gen.log" >&2
cat > "$W/heimdall.toml" <<TOML
data_dir = "$W/data"
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
[limits]
memtable_bytes_max = 16777216
backlog_bytes_max = $((BUDGET_MIB << 20))
TOML
"$BIN/heimdall" serve --config "$W/heimdall.toml" > "$W/serve.out" 2> "$W/serve.err" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "serving" "$W/serve.out" && break; sleep 0.1; done
ADDR=$(grep -o "grpc=[0-9.:]*" "$W/serve.out" | cut -d= -f2)
load() { "$BIN/ingest-load" --connect "$ADDR" --input "$W/gen.log" --lines 400000 --server-pid "$PID" "$@"; }
echo "# 1. sustainable (flat out, $CLIENTS clients)"
A=$(load --clients "$CLIENTS" --seconds "$SECONDS_EACH")
echo "$A"
R=$(echo "$A" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["lines_per_s"]))')
echo "# 2. overload: $((3 * R)) lines/s offered by $((3 * CLIENTS)) clients"
load --clients $((3 * CLIENTS)) --seconds "$SECONDS_EACH" --rate $((3 * R)) --timeline
echo "# 3. after (flat out, $CLIENTS clients)"
load --clients "$CLIENTS" --seconds "$SECONDS_EACH"
echo "# server peak RSS: $(grep VmHWM /proc/$PID/status)"
