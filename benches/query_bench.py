#!/usr/bin/env python3
"""Issue 4 query benchmark: Heimdall beside chDB (ClickHouse's engine), DuckDB and
ripgrep, on the same generated rows, in the same run.

Every query runs once right after the page cache is dropped and the engine is
opened anew ("first"), then 10 more times ("warm", p50 reported). Heimdall is
timed in-process against a data directory opened once, as the server holds it
(`query-latency`, which opens the engine, runs the query once and then --runs
times), and also as a whole `heimdall query` process (open included); chDB and
DuckDB in-process through their Python APIs; ripgrep as a process.

Setup and run (see docs/benchmarks.md for the numbers):

    cargo build --release -p heimdall-server -p heimdall-benches  # heimdall, heimdall-gen, query-latency
    target/release/heimdall-gen --lines 10000000 --seed 1 --format jsonl --out /tmp/gen10m.jsonl
    target/release/heimdall-gen --lines 10000000 --seed 1 --out /tmp/gen10m.log
    target/release/heimdall ingest --format jsonl --data-dir /tmp/hdj /tmp/gen10m.jsonl
    python3 -m venv /tmp/bench-venv && /tmp/bench-venv/bin/pip install chdb duckdb
    apt-get install -y ripgrep
    /tmp/bench-venv/bin/python benches/query_bench.py --heimdall target/release/heimdall

chDB: MergeTree ordered by time, a tokenbf_v1 skip index on the message.
DuckDB: a table in a database file. Both loaded once from the JSONL file (kept
between runs in --work).
"""
import argparse
import json
import os
import statistics
import subprocess
import time

QUERIES = [
    # name, heimdall, chdb, duckdb, ripgrep args (None: not a scan query)
    ("needle word (1 hit)",
     "needle_1 | stats count()",
     # ClickHouse's tokens are runs of [A-Za-z0-9] ('_' separates), so the bloom
     # filter can only be asked for 'needle'; the match() verifies the whole word.
     r"SELECT count() FROM logs WHERE hasToken(msg, 'needle') AND match(msg, '(^|[^A-Za-z0-9_])needle_1([^A-Za-z0-9_]|$)')",
     r"SELECT count(*) FROM logs WHERE regexp_matches(msg, '(^|[^A-Za-z0-9_])needle_1([^A-Za-z0-9_]|$)')",
     ["-c", "-w", "needle_1"]),
    ("phrase \"error state\"",
     '"error state" | stats count()',
     r"SELECT count() FROM logs WHERE hasToken(msg, 'error') AND hasToken(msg, 'state') AND match(msg, '(?i)(^|[^A-Za-z0-9_])error[^A-Za-z0-9_]+state([^A-Za-z0-9_]|$)')",
     r"SELECT count(*) FROM logs WHERE regexp_matches(msg, '(?i)(^|[^A-Za-z0-9_])error[^A-Za-z0-9_]+state([^A-Za-z0-9_]|$)')",
     ["-c", "-i", r"(^|[^A-Za-z0-9_])error[^A-Za-z0-9_]+state([^A-Za-z0-9_]|$)"]),
    ("field + word",
     "level:ERROR needle_10000 | stats count()",
     r"SELECT count() FROM logs WHERE level = 'ERROR' AND hasToken(msg, 'needle') AND match(msg, '(^|[^A-Za-z0-9_])needle_10000([^A-Za-z0-9_]|$)')",
     r"SELECT count(*) FROM logs WHERE level = 'ERROR' AND regexp_matches(msg, '(^|[^A-Za-z0-9_])needle_10000([^A-Za-z0-9_]|$)')",
     None),
    ("count by level",
     "* | stats count() by (level)",
     "SELECT level, count() FROM logs GROUP BY level ORDER BY level",
     "SELECT level, count(*) FROM logs GROUP BY level ORDER BY level",
     None),
    ("1-minute histogram",
     "* | stats count() by (_time:1m)",
     "SELECT toStartOfMinute(t) AS m, count() FROM logs GROUP BY m ORDER BY m",
     "SELECT date_trunc('minute', t) AS m, count(*) FROM logs GROUP BY m ORDER BY m",
     None),
    ("top 10 by client (~100k values)",
     "* | top 10 by (client)",
     "SELECT client, count() AS c FROM logs GROUP BY client ORDER BY c DESC, client LIMIT 10",
     "SELECT client, count(*) AS c FROM logs GROUP BY client ORDER BY c DESC, client LIMIT 10",
     None),
    ("regex needle_1[0-9]+",
     '~"needle_1[0-9]+" | stats count()',
     "SELECT count() FROM logs WHERE match(msg, 'needle_1[0-9]+')",
     "SELECT count(*) FROM logs WHERE regexp_matches(msg, 'needle_1[0-9]+')",
     ["-c", "needle_1[0-9]+"]),
]


def drop_caches():
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000.0, out


def measure(fn, runs):
    dropped = drop_caches()
    first, out = timed(fn)
    warm = [timed(fn)[0] for _ in range(runs)]
    return first, statistics.median(warm), out, dropped


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--heimdall", default="target/release/heimdall")
    ap.add_argument("--query-latency", default="target/release/query-latency")
    ap.add_argument("--data-dir", default="/tmp/hdj")
    ap.add_argument("--jsonl", default="/tmp/gen10m.jsonl")
    ap.add_argument("--raw", default="/tmp/gen10m.log")
    ap.add_argument("--work", default="/tmp/query-bench")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--only", default="", help="comma-separated systems")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    systems = set(args.only.split(",")) if args.only else {"heimdall", "cli", "chdb", "duckdb", "rg"}

    import chdb.session
    import duckdb

    chdb_dir = os.path.join(args.work, "chdb")
    duck_path = os.path.join(args.work, "duck.db")
    if "chdb" in systems and not os.path.exists(os.path.join(args.work, "chdb.loaded")):
        s = chdb.session.Session(chdb_dir)
        t, _ = timed(lambda: (
            s.query("DROP TABLE IF EXISTS logs"),
            s.query("CREATE TABLE logs (t DateTime64(9, 'UTC'), msg String, system LowCardinality(String), "
                    "level LowCardinality(String), client String, "
                    "INDEX tok msg TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1) "
                    "ENGINE = MergeTree ORDER BY t"),
            s.query(f"INSERT INTO logs SELECT parseDateTime64BestEffort(_time, 9, 'UTC'), _msg, system, level, client "
                    f"FROM file('{args.jsonl}', 'JSONEachRow', "
                    f"'_time String, _msg String, system String, level String, client String')"),
            s.query("OPTIMIZE TABLE logs FINAL"),
        ))
        s.close()
        open(os.path.join(args.work, "chdb.loaded"), "w").write(f"{t:.0f} ms\n")
        print(f"chdb: loaded in {t / 1000:.1f} s")
    if "duckdb" in systems and not os.path.exists(duck_path):
        con = duckdb.connect(duck_path)
        t, _ = timed(lambda: con.execute(
            f"CREATE TABLE logs AS SELECT CAST(_time AS TIMESTAMPTZ) AS t, _msg AS msg, system, level, client "
            f"FROM read_json('{args.jsonl}', format='newline_delimited', "
            f"columns={{_time: 'VARCHAR', _msg: 'VARCHAR', system: 'VARCHAR', level: 'VARCHAR', client: 'VARCHAR'}})"))
        con.close()
        print(f"duckdb: loaded in {t / 1000:.1f} s")

    def heimdall(q):
        def run():
            p = subprocess.run([args.heimdall, "query", "--data-dir", args.data_dir, "--output", "jsonl", q],
                               check=True, capture_output=True, text=True)
            return len(p.stdout.splitlines()), p.stdout.splitlines()[:1]
        return run

    results = []
    for name, hq, cq, dq, rg in QUERIES:
        row = {"query": name}
        if "heimdall" in systems:
            dropped = drop_caches()
            p = subprocess.run([args.query_latency, "--data-dir", args.data_dir, "--runs", str(args.runs), hq],
                               check=True, capture_output=True, text=True)
            m = json.loads(p.stdout.splitlines()[-1])
            row["heimdall"] = (m["open_ms"] + m["first_ms"], m["p50_ms"], [m["rows"], m["head"][:1]], dropped)
        if "cli" in systems:
            row["cli"] = measure(heimdall(hq), args.runs)
        if "chdb" in systems:
            holder = {}

            def chdb_run():
                if "s" not in holder:
                    holder["s"] = chdb.session.Session(chdb_dir)
                r = holder["s"].query(cq, "CSV")
                text = r.data() if hasattr(r, "data") else str(r)
                return len(text.splitlines()), text.splitlines()[:1]
            dropped = drop_caches()
            holder.clear()
            first, out = timed(chdb_run)
            warm = statistics.median([timed(chdb_run)[0] for _ in range(args.runs)])
            holder["s"].close()
            row["chdb"] = (first, warm, out, dropped)
        if "duckdb" in systems:
            holder = {}

            def duck_run():
                if "c" not in holder:
                    holder["c"] = duckdb.connect(duck_path, read_only=True)
                rows = holder["c"].execute(dq).fetchall()
                return len(rows), [str(rows[0])] if rows else []
            dropped = drop_caches()
            holder.clear()
            first, out = timed(duck_run)
            warm = statistics.median([timed(duck_run)[0] for _ in range(args.runs)])
            holder["c"].close()
            row["duckdb"] = (first, warm, out, dropped)
        if "rg" in systems and rg:
            def rg_run():
                p = subprocess.run(["rg"] + rg + [args.raw], capture_output=True, text=True)
                return 1, [p.stdout.strip()]
            row["rg"] = measure(rg_run, args.runs)
        results.append(row)
        print(json.dumps({k: (v if k == "query" else [round(v[0], 1), round(v[1], 1), v[2]]) for k, v in row.items()}),
              flush=True)

    def cell(v):
        return "-" if v is None else f"{v[1]:.0f} / {v[0]:.0f}"

    print()
    print("| query | Heimdall (in-process) | `heimdall query` process | chDB | DuckDB | ripgrep | Heimdall / chDB (warm) | Heimdall / DuckDB (warm) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        h, p, c, d, g = r.get("heimdall"), r.get("cli"), r.get("chdb"), r.get("duckdb"), r.get("rg")
        ratio = lambda a, b: "-" if a is None or b is None else f"{a[1] / b[1]:.2f}"
        print(f"| {r['query']} | {cell(h)} | {cell(p)} | {cell(c)} | {cell(d)} | {cell(g)} | {ratio(h, c)} | {ratio(h, d)} |")


if __name__ == "__main__":
    main()
