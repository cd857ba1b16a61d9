#!/usr/bin/env bash
# Ingest under query load (docs/benchmarks.md, issue 16): gRPC ingest
# acknowledgement p50/p99 alone and while QUERY_CLIENTS (4) Arrow Flight clients
# loop heavy queries (a regex over _msg, top 10 by a high-cardinality field).
# One release server, default settings except FLUSH_INTERVAL (default 1h: the
# PRELOAD lines stay in the memtable, the case where queries and writes meet;
# FLUSH_INTERVAL=10s is the default policy, most records then in segments).
#
# CPUS (a taskset list, e.g. "1") pins the server and the clients to those cores.
#
#   cargo build --release -p heimdall-server -p heimdall-benches
#   benches/scripts/ingest-under-query.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
W="${W:-/tmp/ingest-under-query}"
BIN="${BIN:-target/release}"
PRELOAD="${PRELOAD:-200000}"
FLUSH_INTERVAL="${FLUSH_INTERVAL:-1h}"
SECONDS_EACH="${SECONDS_EACH:-20}"
QUERY_CLIENTS="${QUERY_CLIENTS:-4}"
PIN=()
if [ -n "${CPUS:-}" ]; then PIN=(taskset -c "$CPUS"); fi
rm -rf "$W" && mkdir -p "$W"
"$BIN/heimdall-gen" --lines $((PRELOAD + 100000)) --seed 1 --out "$W/gen.log" >&2
cat > "$W/heimdall.toml" <<TOML
data_dir = "$W/data"
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
[limits]
flush_interval = "$FLUSH_INTERVAL"
TOML
# QUERY_PRIORITY (idle, low, normal) sets [limits] query_priority,
# LATENCY_SLICE (e.g. 300us, 0s) [limits] latency_slice.
if [ -n "${QUERY_PRIORITY:-}" ]; then
  echo "query_priority = \"$QUERY_PRIORITY\"" >> "$W/heimdall.toml"
fi
if [ -n "${LATENCY_SLICE:-}" ]; then
  echo "latency_slice = \"$LATENCY_SLICE\"" >> "$W/heimdall.toml"
fi
"${PIN[@]}" "$BIN/heimdall" serve --config "$W/heimdall.toml" > "$W/serve.out" 2> "$W/serve.err" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "serving" "$W/serve.out" && break; sleep 0.1; done
ADDR=$(grep -o "grpc=[0-9.:]*" "$W/serve.out" | cut -d= -f2)
# CLIENT_SLICE (microseconds) is the load client's own time slice (0: the kernel's).
"${PIN[@]}" "$BIN/ingest-under-query" --connect "$ADDR" --input "$W/gen.log" --preload "$PRELOAD" \
  --seconds "$SECONDS_EACH" --query-clients "$QUERY_CLIENTS" --server-pid "$PID" \
  --latency-slice-us "${CLIENT_SLICE:-0}" "$@"
# Flushes during the run (with the default flush_interval of 1h: by size only):
# one in a timed phase shows in that phase's slowest acknowledgements.
HTTP=$(grep -o "http=[0-9.:]*" "$W/serve.out" | cut -d= -f2)
echo "flushes: $(curl -s "http://$HTTP/metrics" | grep -E '^heimdall_flushes(_total)? ' | awk '{print $2}')" >&2
