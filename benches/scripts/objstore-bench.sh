#!/usr/bin/env bash
# The query set of the query-language benchmark on the 10M-line generated set, with
# every segment on local disk and with every segment offloaded to a local S3 server
# (moto, from the test venv), cold (empty disk cache, page cache dropped, fresh
# process) and warm (p50 of 10 reruns in the same process). One JSON line per
# (tier, query) on stdout; docs/benchmarks.md has the table.
#
#   cargo build --release -p heimdall-server -p heimdall-benches
#   benches/scripts/objstore-bench.sh            # W=/tmp/objstore-bench by default
#   TIERS=s3 benches/scripts/objstore-bench.sh   # only the offloaded runs
set -euo pipefail
cd "$(dirname "$0")/../.."
W="${W:-/tmp/objstore-bench}"
PY="${HEIMDALL_TEST_PYTHON:-$HOME/.cache/heimdall-test-venv/bin/python}"
BIN=target/release
mkdir -p "$W"
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

if [ ! -f "$W/local/MANIFEST" ]; then
  "$BIN/heimdall-gen" --lines 10000000 --seed 1 --format jsonl --out "$W/gen.jsonl"
  "$BIN/heimdall" ingest --data-dir "$W/local" --format jsonl "$W/gen.jsonl" >&2
  rm -f "$W/gen.jsonl"
fi

"$PY" -m moto.server -H 127.0.0.1 -p 0 2> "$W/moto.log" &
MOTO=$!
trap 'kill $MOTO 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "Running on http" "$W/moto.log" && break; sleep 0.1; done
EP=$(grep -o "http://127.0.0.1:[0-9]*" "$W/moto.log" | head -1)
"$PY" tests/py/s3_tool.py create-bucket "$EP" bench >&2
cat > "$W/heimdall.toml" <<TOML
[object_store]
url = "s3://bench/node"
endpoint = "$EP"
region = "us-east-1"
allow_http = true
[object_store.options]
access_key_id = "test"
secret_access_key = "test"
TOML
rm -rf "$W/s3" && cp -r "$W/local" "$W/s3"
/usr/bin/time -f "offload: %e s, max RSS %M KiB" \
  "$BIN/heimdall" --config "$W/heimdall.toml" offload --data-dir "$W/s3" >&2

QUERIES=(
  'needle_1 | stats count()'
  '"error state" | stats count()'
  'level:ERROR needle_10000 | stats count()'
  '* | stats count() by (level)'
  '* | stats count() by (_time:1m)'
  '* | top 10 by (client)'
  '~"needle_1[0-9]+" | stats count()'
)
S3=(--store-url s3://bench/node --store-option "endpoint=$EP" --store-option region=us-east-1
    --store-option allow_http=true --store-option access_key_id=test --store-option secret_access_key=test)
TIERS="${TIERS:-local s3}"
for q in "${QUERIES[@]}"; do
  if [[ " $TIERS " == *" local "* ]]; then
    drop
    "$BIN/query-latency" --data-dir "$W/local" --runs 10 "$q" | sed 's/^{/{"tier":"local",/'
  fi
  if [[ " $TIERS " == *" s3 "* ]]; then
    rm -rf "$W/s3/cache"; drop
    # (a failing query, e.g. over its deadline, is reported and the next one runs)
    "$BIN/query-latency" --data-dir "$W/s3" --runs 10 --deadline-s 300 "${S3[@]}" "$q" | sed 's/^{/{"tier":"s3",/' ||
      echo "{\"tier\":\"s3\",\"query\":\"$(printf %s "$q" | sed 's/"/\\"/g')\",\"error\":true}"
  fi
done
