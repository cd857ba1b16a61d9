"""Clients of a running Heimdall server for the end-to-end tests, built only from
libraries no one here wrote: grpcio (with stubs generated from
server/proto/heimdall/v1/ingest.proto by grpcio-tools at run time), pyarrow.flight,
and prometheus_client's text-format parser.

Usage: python heimdall_client.py SCENARIO GRPC_ADDR HTTP_ADDR [ARGS...]
Each scenario prints one JSON line with what it saw, or exits non-zero.
"""
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request

import grpc
import pyarrow as pa
import pyarrow.flight as fl
from prometheus_client.parser import text_string_to_metric_families

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.join(HERE, "..", "..", "server", "proto")


def stubs():
    """Generates and imports the Python stubs of the ingest API."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="heimdall-pb-")
    rc = protoc.main([
        "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={out}", f"--grpc_python_out={out}",
        os.path.join(PROTO_ROOT, "heimdall", "v1", "ingest.proto"),
    ])
    if rc != 0:
        raise SystemExit(f"protoc failed: {rc}")
    sys.path.insert(0, out)
    from heimdall.v1 import ingest_pb2, ingest_pb2_grpc
    return ingest_pb2, ingest_pb2_grpc


def records(pb, ids, extra=None):
    out = []
    for i in ids:
        r = pb.Record(msg=f"event id_{i} user login ok", level="INFO" if i % 5 else "ERROR")
        r.fields.add(name="n", i64=i)
        r.fields.add(name="host", str=f"h{i % 3}")
        if extra:
            r.stream.update(extra)
        out.append(r)
    return out


def flight_rows(grpc_addr, query, tenant=None):
    c = fl.connect(f"grpc://{grpc_addr}")
    ticket = {"query": query}
    if tenant:
        ticket["tenant"] = tenant
    t = c.do_get(fl.Ticket(json.dumps(ticket).encode())).read_all()
    # Nanosecond timestamps do not convert to datetime: compare as integers.
    if "_time" in t.schema.names:
        t = t.set_column(t.schema.get_field_index("_time"), "_time", t.column("_time").cast(pa.int64()))
    return t.to_pylist()


def code_of(call):
    try:
        call()
    except grpc.RpcError as e:
        return e.code().name, e.details()
    return "OK", ""


def scenario_api(grpc_addr, http_addr):
    """Push, retry, query, DoPut, GetFlightInfo, actions, metrics, bad requests."""
    pb, pbg = stubs()
    ch = grpc.insecure_channel(grpc_addr, options=[("grpc.max_send_message_length", 64 << 20)])
    ingest = pbg.IngestStub(ch)
    seen = {}
    r1 = ingest.Push(pb.PushRequest(records=records(pb, range(0, 100)), stream={"service": "api"}))
    seen["push"] = [r1.first_lsn, r1.last_lsn, r1.records]
    # Idempotent retry: the second identical push is recognised.
    req = pb.PushRequest(producer_id="p-1", sequence=7, records=records(pb, range(100, 150)))
    a = ingest.Push(req)
    b = ingest.Push(req)
    seen["retry"] = [a.duplicates, b.duplicates, a.first_lsn == b.first_lsn]
    # Streaming push of three batches.
    def batches():
        for k in range(3):
            yield pb.PushRequest(records=records(pb, range(200 + 10 * k, 210 + 10 * k)))
    s = ingest.PushStream(batches())
    seen["stream"] = [s.batches, s.records]
    # Refused requests, each with its status, while the server keeps serving.
    big = pb.PushRequest(records=[pb.Record(msg="x" * (17 << 20))])
    seen["oversized"] = code_of(lambda: ingest.Push(big))
    bad_field = pb.PushRequest(records=[pb.Record(msg="m", fields=[pb.Field(name="_hidden", str="v")])])
    seen["reserved_field"] = code_of(lambda: ingest.Push(bad_field))
    seen["bad_tenant"] = code_of(lambda: ingest.Push(pb.PushRequest(tenant="a/b", records=records(pb, [1]))))
    # Wrong message type on the ingest method: raw bytes that are not a PushRequest.
    raw = ch.unary_unary("/heimdall.v1.Ingest/Push", request_serializer=lambda b: b,
                         response_deserializer=lambda b: b)
    seen["malformed"] = code_of(lambda: raw(b"\xff\xff\xff\xff\x0f"))

    c = fl.connect(f"grpc://{grpc_addr}")
    seen["count"] = flight_rows(grpc_addr, "* | stats count()")[0]["count()"]
    seen["plain_ticket"] = c.do_get(fl.Ticket(b"id_42 | fields _msg")).read_all().to_pylist()
    seen["by_level"] = flight_rows(grpc_addr, "* | stats count() by (level)")
    seen["label"] = flight_rows(grpc_addr, "service:api | stats count()")[0]["count()"]
    seen["field"] = flight_rows(grpc_addr, "n:>=140 n:<150 | stats count()")[0]["count()"]
    info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps({"query": "id_7 | fields _msg, n"}).encode()))
    seen["info"] = [info.schema.names, info.total_records,
                    c.do_get(info.endpoints[0].ticket).read_all().to_pylist()]
    t = pa.table({"_msg": ["put alpha", "put beta"], "level": ["WARN", None], "k": [1.5, None],
                  "svc": pa.array(["w", "w"]).dictionary_encode(), "_time": pa.array([1_700_000_000_000_000_000, 1_700_000_000_000_000_001],
                                                      type=pa.timestamp("ns", tz="UTC"))})
    w, reader = c.do_put(fl.FlightDescriptor.for_command(json.dumps({"stream_fields": ["svc"]}).encode()), t.schema)
    w.write_table(t)
    w.done_writing()
    meta = reader.read()
    w.close()
    seen["put"] = json.loads(meta.to_pybytes())["records"]
    seen["put_rows"] = flight_rows(grpc_addr, "put | fields _time, _msg, level, k, svc | sort by (_time)")
    bad = pa.table({"_msg": ["x"], "when": pa.array([[1]], type=pa.list_(pa.int64()))})
    try:
        w, reader = c.do_put(fl.FlightDescriptor.for_command(b"{}"), bad.schema)
        w.write_table(bad)
        w.done_writing()
        reader.read()
        w.close()
        seen["put_bad"] = "OK"
    except (fl.FlightError, pa.ArrowException) as e:
        seen["put_bad"] = type(e).__name__ + ": " + str(e).split(". gRPC")[0]
    try:
        c.do_get(fl.Ticket(b"error | bogus")).read_all()
        seen["bad_query"] = "OK"
    except (fl.FlightError, pa.ArrowException) as e:
        seen["bad_query"] = type(e).__name__ + ": " + str(e).split(". gRPC")[0]
    seen["actions"] = sorted(a.type for a in c.list_actions())
    seen["flush"] = json.loads(next(iter(c.do_action(fl.Action("flush", b"")))).body.to_pybytes())
    seen["stats"] = json.loads(next(iter(c.do_action(fl.Action("stats", b"")))).body.to_pybytes())["records"]
    seen["count_after_flush"] = flight_rows(grpc_addr, "* | stats count()")[0]["count()"]
    # Mined templates: the listing, and `_template:ID` over Flight agreeing with it.
    tpl = json.loads(next(iter(c.do_action(fl.Action("templates", json.dumps({"limit": 1000}).encode())))).body.to_pybytes())
    top = tpl["templates"][0]
    folded = sum(t["count"] for t in tpl["templates"] if t["alias_of"] == top["id"])
    seen["templates"] = {
        "total": tpl["total"],
        "listed": len(tpl["templates"]),
        "counted": sum(t["count"] for t in tpl["templates"]),
        "top_count": top["count"] + folded,
        "top_queried": flight_rows(grpc_addr, f"_template:{top['id']} | stats count()")[0]["count()"],
        "top_text": top["text"],
        "hidden": "_template" in flight_rows(grpc_addr, "* | limit 1")[0],
        "named": flight_rows(grpc_addr, f"_template:{top['id']} | fields _template | limit 1")[0]["_template"] == top["id"],
    }

    with urllib.request.urlopen(f"http://{http_addr}/readyz") as r:
        seen["readyz"] = [r.status, json.loads(r.read())["ready"]]
    body = b'{"_msg": "from http id_9000", "level": "INFO"}\n{"_msg": "second", "x": 1}\n'
    req = urllib.request.Request(f"http://{http_addr}/insert/jsonl?stream=service%3Dweb", data=body, method="POST")
    with urllib.request.urlopen(req) as r:
        seen["http_insert"] = json.loads(r.read())["records"]
    bad_req = urllib.request.Request(f"http://{http_addr}/insert/jsonl", data=b"{not json\n", method="POST")
    try:
        urllib.request.urlopen(bad_req)
        seen["http_bad"] = 200
    except urllib.error.HTTPError as e:
        seen["http_bad"] = [e.code, json.loads(e.read())["error"][:40]]
    with urllib.request.urlopen(f"http://{http_addr}/metrics") as r:
        text = r.read().decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    def sample(name, suffix=""):
        return [s.value for s in fams[name].samples if s.name == name + suffix][0]
    seen["metrics"] = {
        "records": sample("heimdall_ingested_records", "_total"),
        "duplicates": sample("heimdall_ingest_duplicates", "_total"),
        "rejected": sample("heimdall_ingest_rejected", "_total") >= 4,
        "fsyncs": sample("heimdall_wal_fsync_seconds", "_count") > 0,
        "queries": sample("heimdall_query_seconds", "_count") > 0,
        "segments": sample("heimdall_segments") >= 1,
        "types": sorted({f.type for f in fams.values()}),
    }
    print(json.dumps(seen, sort_keys=True))


def scenario_load(grpc_addr, http_addr, acked_path, start_id, threads, seconds):
    """Pushes batches of unique ids from several threads until killed (or for
    `seconds`); appends each acknowledged batch's ids to `acked_path` right after
    its acknowledgement, so whoever kills the server knows what was promised."""
    pb, pbg = stubs()
    lock = threading.Lock()
    next_id = [int(start_id)]
    deadline = time.time() + float(seconds)
    out = open(acked_path, "a", buffering=1)

    def worker():
        ch = grpc.insecure_channel(grpc_addr)
        stub = pbg.IngestStub(ch)
        while time.time() < deadline:
            with lock:
                first = next_id[0]
                next_id[0] += 50
            ids = range(first, first + 50)
            try:
                stub.Push(pb.PushRequest(records=records(pb, ids)), timeout=10)
            except grpc.RpcError:
                return  # the server is gone
            with lock:
                out.write(f"{first} {first + 50}\n")
                out.flush()
                os.fsync(out.fileno())

    ts = [threading.Thread(target=worker) for _ in range(int(threads))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps({"next_id": next_id[0]}))


def scenario_ids(grpc_addr, http_addr):
    """Every stored id once per record: {"ids": [[id, count], ...]} for ids seen more than once, and the total."""
    # Counted per band of ids (each round's ids start 10M apart), so that no one
    # query makes more groups than the server's group limit.
    span = flight_rows(grpc_addr, "* | stats min(n), max(n)")[0]
    counts = {}
    if span["min(n)"] is not None:
        band = 10_000_000
        lo = int(span["min(n)"]) // band * band
        for a in range(lo, int(span["max(n)"]) + 1, band):
            for r in flight_rows(grpc_addr, f"n:[{a}, {a + band}) | stats count() by (n)"):
                if r["n"] is not None:
                    counts[int(r["n"])] = r["count()"]
    print(json.dumps({"total": sum(counts.values()), "distinct": len(counts),
                      "dupes": [[k, v] for k, v in counts.items() if v != 1][:20],
                      "ids": sorted(counts)}))


def scenario_retry(grpc_addr, http_addr, producer, seq):
    """Pushes the batch (producer, seq) of the api scenario again."""
    pb, pbg = stubs()
    ingest = pbg.IngestStub(grpc.insecure_channel(grpc_addr))
    r = ingest.Push(pb.PushRequest(producer_id=producer, sequence=int(seq), records=records(pb, range(100, 150))))
    print(json.dumps({"duplicates": r.duplicates, "first_lsn": r.first_lsn}))


def scenario_small_ingests(grpc_addr, http_addr, count, lines_path):
    """`count` small gRPC pushes of real log lines (a few each, with fields n and
    host), each followed by a `flush` action: one small segment per push."""
    pb, pbg = stubs()
    ingest = pbg.IngestStub(grpc.insecure_channel(grpc_addr))
    c = fl.connect(f"grpc://{grpc_addr}")
    with open(lines_path, encoding="utf-8", errors="replace") as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    base = 1_700_000_000 * 10**9
    n = 0
    for i in range(int(count)):
        batch = []
        for _ in range(1 + i % 7):
            r = pb.Record(time_unix_nano=base + n * 10**6, msg=lines[n % len(lines)])
            r.fields.add(name="n", i64=n)
            r.fields.add(name="host", str=f"h{n % 3}")
            batch.append(r)
            n += 1
        ingest.Push(pb.PushRequest(records=batch))
        list(c.do_action(fl.Action("flush", b"")))
    print(json.dumps({"records": n}))


def scenario_answers(grpc_addr, http_addr, queries_json):
    """The rows each query of the JSON list answers: {query: rows}."""
    print(json.dumps({q: flight_rows(grpc_addr, q) for q in json.loads(queries_json)}))


if __name__ == "__main__":
    name, grpc_addr, http_addr, *rest = sys.argv[1:]
    scenarios = {"api": scenario_api, "load": scenario_load, "ids": scenario_ids, "retry": scenario_retry,
                 "small_ingests": scenario_small_ingests, "answers": scenario_answers}
    scenarios[name](grpc_addr, http_addr, *rest)
