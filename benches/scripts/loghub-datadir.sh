#!/usr/bin/env bash
# Bytes on disk of a Heimdall data directory (every file in it: segments, manifest,
# WAL, lock) after `heimdall ingest` of each Loghub sample, and of all ten into one
# directory, beside zstd -3 and zstd -19 of the same raw text.
#
#   benches/scripts/loghub-datadir.sh [HEIMDALL_BIN] [LOGHUB_DIR]
#
# Defaults: target/release/heimdall (build it first with
# `cargo build --release -p heimdall-server`) and ../shared/data/loghub. A directory
# of plain `*.log` files works too (e.g. the generated corpus of other log kinds:
# `template-eval --generated 50000 --dump DIR`).
set -euo pipefail
bin=${1:-${CARGO_TARGET_DIR:-target}/release/heimdall}
loghub=${2:-../shared/data/loghub}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
files_bytes() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }
echo "| system | raw | zstd -3 | zstd -19 | data dir | segments | data dir / zstd -3 | data dir / zstd -19 |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
row() {
    local name=$1; shift
    local dir="$work/$name"
    "$bin" ingest --data-dir "$dir" "$@" > /dev/null
    local raw z3 z19 dd segs
    raw=$(cat "$@" | wc -c)
    z3=$(cat "$@" | zstd -3 -c | wc -c)
    z19=$(cat "$@" | zstd -19 -c | wc -c)
    dd=$(files_bytes "$dir")
    segs=$(find "$dir/segments" -name '*.seg' | wc -l)
    awk -v n="$name" -v r="$raw" -v a="$z3" -v b="$z19" -v d="$dd" -v s="$segs" \
        'BEGIN { printf "| %s | %d | %d | %d | %d | %d | %.2f | %.2f |\n", n, r, a, b, d, s, d / a, d / b }'
}
all=()
shopt -s nullglob
files=("$loghub"/*/*_2k.log)
[ ${#files[@]} -gt 0 ] || files=("$loghub"/*.log)
for f in "${files[@]}"; do
    name=$(basename "$f" .log)
    row "${name%_2k}" "$f"
    all+=("$f")
done
row "all ${#all[@]}, one data dir" "${all[@]}"
