#!/usr/bin/env bash
# Scale run (docs/benchmarks.md, issue 17 item 4): LINES generated JSON lines piped
# into embedded `heimdall ingest` (the generator shares the machine's cores), its
# throughput every 2 s, peak RSS, size on disk as ingested and after `heimdall
# compact`, then the query table (benches/query_bench.py, Heimdall only) on the
# compacted directory. Then restart time with a full WAL: a server with a memtable
# big enough to hold WAL_LINES raw lines (flush by size only) takes them over gRPC,
# is killed with -9, and is restarted; the time to /readyz = 200 is the replay.
#
#   cargo build --release -p heimdall-server -p heimdall-benches
#   LINES=100000000 W=/work/scale benches/scripts/scale-run.sh
#
# Needs about 2.5 GB of disk per 100M lines for the data directory (no input file
# is written) and the WAL_LINES raw file (~134 MB per 1M lines).
set -euo pipefail
cd "$(dirname "$0")/../.."
LINES="${LINES:-10000000}"
W="${W:-/tmp/scale-$LINES}"
BIN="${BIN:-target/release}"
RUNS="${RUNS:-5}"
WAL_LINES="${WAL_LINES:-8000000}"
PY="${PY:-python3}"
mkdir -p "$W"
rm -rf "$W/data"
date -u +"start %FT%TZ" | tee "$W/summary.txt"

# 1. Ingest: the generator's JSON lines on a pipe into embedded ingest.
"$BIN/heimdall-gen" --lines "$LINES" --seed 1 --format jsonl 2> "$W/gen.err" |
  /usr/bin/time -f "ingest wall %e s, peak RSS %M KB" \
    "$BIN/heimdall" ingest --format jsonl --data-dir "$W/data" - > "$W/ingest.out" 2> "$W/ingest.err"
cat "$W/ingest.out" "$W/gen.err" | tee -a "$W/summary.txt"
tail -1 "$W/ingest.err" | tee -a "$W/summary.txt"
# Throughput per 2 s interval, from the cumulative progress lines.
awk '/^heimdall: / { mb = $4; rate = $6; t = mb / rate;
       if (pt) printf "t=%6.1f s  %7.1f MB  interval %6.1f MB/s\n", t, mb, (mb - pmb) / (t - pt);
       pt = t; pmb = mb }' "$W/ingest.err" > "$W/throughput.txt"
awk '{ print $(NF-1) }' "$W/throughput.txt" | sort -n | awk '{ v[NR] = $1 } END {
  if (NR) printf "interval MB/s: min %.1f, median %.1f, max %.1f over %d intervals\n", v[1], v[int((NR+1)/2)], v[NR], NR }' \
  | tee -a "$W/summary.txt"
"$BIN/heimdall" stats --data-dir "$W/data" > "$W/stats-ingested.txt"
grep -E "^(segments|bytes on disk|  index|  WAL)" "$W/stats-ingested.txt" | sed 's/^/ingested: /' | tee -a "$W/summary.txt"

# 2. Compaction, as the server's background task would leave it.
/usr/bin/time -f "compact wall %e s, peak RSS %M KB" "$BIN/heimdall" compact --data-dir "$W/data" \
  2>&1 | tee -a "$W/summary.txt"
"$BIN/heimdall" stats --data-dir "$W/data" > "$W/stats-compacted.txt"
grep -E "^(segments|bytes on disk|  index|  WAL)" "$W/stats-compacted.txt" | sed 's/^/compacted: /' | tee -a "$W/summary.txt"

# 3. The query table, warm p50 of RUNS runs / the first after dropping caches.
"$PY" benches/query_bench.py --heimdall "$BIN/heimdall" --query-latency "$BIN/query-latency" \
  --data-dir "$W/data" --work "$W/qb" --only heimdall --runs "$RUNS" > "$W/queries.txt" 2>&1
grep "^|" "$W/queries.txt" | tee -a "$W/summary.txt"

# 4. Restart with a full WAL.
rm -rf "$W/wal-test" && mkdir -p "$W/wal-test"
"$BIN/heimdall-gen" --lines "$WAL_LINES" --seed 2 --out "$W/wal-test/gen.log" 2> /dev/null
cat > "$W/wal-test/heimdall.toml" <<TOML
data_dir = "$W/wal-test/data"
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
[limits]
memtable_bytes_max = 17179869184
backlog_bytes_max = 17179869184
flush_interval = "0s"
TOML
serve() {
  "$BIN/heimdall" serve --config "$W/wal-test/heimdall.toml" > "$W/wal-test/serve.out" 2> "$W/wal-test/serve.err" &
  PID=$!
  for _ in $(seq 6000); do grep -q "serving" "$W/wal-test/serve.out" && break; sleep 0.01; done
  HTTP=$(grep -o "http=[0-9.:]*" "$W/wal-test/serve.out" | cut -d= -f2)
  ADDR=$(grep -o "grpc=[0-9.:]*" "$W/wal-test/serve.out" | cut -d= -f2)
}
serve
trap 'kill -9 $PID 2>/dev/null || true' EXIT
"$BIN/heimdall" ingest --connect "$ADDR" "$W/wal-test/gen.log" > /dev/null
kill -9 $PID; wait $PID 2>/dev/null || true
WAL_BYTES=$(du -sb "$W/wal-test/data/wal" | cut -f1)       # files, preallocation included
PAYLOAD=$(stat -c %s "$W/wal-test/gen.log")
START=$(date +%s.%N)
serve
until curl -sf "http://$HTTP/readyz" > /dev/null; do sleep 0.01; done
END=$(date +%s.%N)
RSS=$(ps -o rss= -p $PID)
kill $PID; wait $PID 2>/dev/null || true
COUNT=$("$BIN/heimdall" query --data-dir "$W/wal-test/data" '* | stats count()' | grep -o '[0-9][0-9]*' | tail -1)
awk -v s="$START" -v e="$END" -v b="$WAL_BYTES" -v p="$PAYLOAD" -v r="$RSS" -v n="$WAL_LINES" -v c="$COUNT" 'BEGIN {
  printf "restart with %s lines (%.2f GiB of log text) in the WAL (%.2f GiB of WAL files): %.2f s to ready, %.2f s per GiB of text, RSS after %.0f MB; records after: %s\n",
    n, p / 2^30, b / 2^30, e - s, (e - s) / (p / 2^30), r / 1024, c }' | tee -a "$W/summary.txt"
date -u +"end %FT%TZ" | tee -a "$W/summary.txt"
