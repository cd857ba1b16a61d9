"""Hostile and careless clients of a running Heimdall server, for the hardening
tests: each scenario does what once took a node down or lost data, with real
clients (grpcio with stubs generated from our .proto, pyarrow.flight), and prints
one JSON line with what it saw.

Usage: python abuse.py SCENARIO GRPC_ADDR HTTP_ADDR [ARGS...]
"""
import json
import os
import sys
import threading
import time
import urllib.request

import grpc
import pyarrow as pa
import pyarrow.flight as fl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heimdall_client import stubs  # noqa: E402


def flight_code(e):
    """The gRPC status name of a pyarrow Flight error."""
    text = str(e)
    for name in ["INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "FAILED_PRECONDITION",
                 "UNAVAILABLE", "INTERNAL", "OUT_OF_RANGE"]:
        if name.lower().replace("_", " ") in text.lower() or name in text:
            return name
    kinds = {fl.FlightServerError: "SERVER", fl.FlightUnavailableError: "UNAVAILABLE",
             fl.FlightTimedOutError: "DEADLINE_EXCEEDED", fl.FlightCancelledError: "CANCELLED"}
    for k, v in kinds.items():
        if isinstance(e, k):
            return v
    if isinstance(e, pa.ArrowInvalid):
        return "INVALID_ARGUMENT"
    if isinstance(e, pa.ArrowException) and "exhausted" in text.lower():
        return "RESOURCE_EXHAUSTED"
    return type(e).__name__


def try_flight(call):
    try:
        return "OK", call()
    except Exception as e:  # pyarrow maps gRPC statuses to several exception types
        return flight_code(e), str(e)[:300]


def count(c, q, tenant=None):
    t = {"query": q + " | stats count()"}
    if tenant:
        t["tenant"] = tenant
    return c.do_get(fl.Ticket(json.dumps(t).encode())).read_all().to_pylist()[0]["count()"]


def scenario_big_put(grpc_addr, http_addr, rows):
    """One DoPut record batch of ROWS short rows."""
    c = fl.connect(f"grpc://{grpc_addr}")
    n = int(rows)
    t = pa.table({"_msg": pa.array(["x"] * n)})

    def put():
        w, r = c.do_put(fl.FlightDescriptor.for_command(b"{}"), t.schema)
        w.write_table(t, max_chunksize=n)
        w.done_writing()
        r.read()
        w.close()
        return None

    code, detail = try_flight(put)
    print(json.dumps({"put": code, "detail": detail if code != "OK" else "", "count": count(c, "*")}))


def scenario_queries_of_death(grpc_addr, http_addr):
    """Huge and deep queries, refused with a reason; the server keeps answering."""
    c = fl.connect(f"grpc://{grpc_addr}")
    seen = {}
    cases = {
        "words_30000": " ".join(["a"] * 30000),
        "ors_5000": " OR ".join(["a"] * 5000),
        "nested_200": "(" * 200 + "a" + ")" * 200,
        "nots_200": "NOT " * 200 + "a",
        "too_long": "a" * (70 << 10),
        "regex_huge": '~"' + "(a|b)" * 40000 + '"',
        "pipes_100": "*" + " | limit 5" * 100,
    }
    for name, q in cases.items():
        code, detail = try_flight(lambda q=q: c.do_get(fl.Ticket(q.encode())).read_all())
        seen[name] = [code, detail[:160]]
    seen["after"] = count(c, "*")
    print(json.dumps(seen))


def scenario_tenants_share_a_producer(grpc_addr, http_addr):
    """Tenants a and b push with the same (producer, sequence)."""
    pb, pbg = stubs()
    ingest = pbg.IngestStub(grpc.insecure_channel(grpc_addr))
    seen = {}
    for tenant in ["a", "b", "a"]:
        r = ingest.Push(pb.PushRequest(tenant=tenant, producer_id="shared", sequence=1,
                                       records=[pb.Record(msg=f"from {tenant}")]))
        seen.setdefault(tenant, []).append(r.duplicates)
    c = fl.connect(f"grpc://{grpc_addr}")
    seen["stored"] = {t: count(c, "from", t) for t in ["a", "b"]}
    print(json.dumps(seen))


def metric(http_addr, name):
    text = urllib.request.urlopen(f"http://{http_addr}/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def scenario_schema_without_running(grpc_addr, http_addr):
    """GetSchema / GetFlightInfo of a query that fails when run (too many groups)."""
    c = fl.connect(f"grpc://{grpc_addr}")
    q = json.dumps({"query": "* | stats count() by (id)"}).encode()
    before = metric(http_addr, "heimdall_queries_total")
    schema = c.get_schema(fl.FlightDescriptor.for_command(q)).schema
    info = c.get_flight_info(fl.FlightDescriptor.for_command(q))
    after_schema = metric(http_addr, "heimdall_queries_total")
    code, _ = try_flight(lambda: c.do_get(info.endpoints[0].ticket).read_all())
    print(json.dumps({
        "schema": [[f.name, str(f.type)] for f in schema],
        "info_schema": [[f.name, str(f.type)] for f in info.schema],
        "total_records": info.total_records,
        "queries_run_by_schema": after_schema - before,
        "do_get": code,
    }))


def scenario_heavy_concurrent(grpc_addr, http_addr, n):
    """N heavy queries at once, then a light one; what each got."""
    heavy = "* | stats count() by (id) | sort by (count()) desc | limit 3"
    codes = []
    lock = threading.Lock()

    def one():
        c = fl.connect(f"grpc://{grpc_addr}")
        code, _ = try_flight(lambda: c.do_get(fl.Ticket(heavy.encode())).read_all())
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=one) for _ in range(int(n))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c = fl.connect(f"grpc://{grpc_addr}")
    started = time.time()
    light = count(c, "id_1")
    print(json.dumps({
        "codes": sorted(codes),
        "light": light,
        "light_seconds": time.time() - started,
        "refused_metric": metric(http_addr, "heimdall_queries_refused_total"),
    }))


def scenario_fill(grpc_addr, http_addr, n):
    """Pushes N records with distinct ids (field `id`)."""
    pb, pbg = stubs()
    ingest = pbg.IngestStub(grpc.insecure_channel(grpc_addr, options=[("grpc.max_send_message_length", 64 << 20)]))
    n = int(n)
    for start in range(0, n, 20000):
        recs = []
        for i in range(start, min(n, start + 20000)):
            r = pb.Record(msg=f"event id_{i} done")
            r.fields.add(name="id", str=f"request-{i}")
            recs.append(r)
        ingest.Push(pb.PushRequest(records=recs))
    print(json.dumps({"pushed": n}))


def scenario_fill_disk(grpc_addr, http_addr, start, batches):
    """Pushes batches of 2,000 records (ids from START) until one is refused; what
    was acknowledged and the refusal."""
    pb, pbg = stubs()
    ingest = pbg.IngestStub(grpc.insecure_channel(grpc_addr, options=[("grpc.max_send_message_length", 64 << 20)]))
    acked, refused = 0, None
    next_id = int(start)
    pad = "x" * 100
    for _ in range(int(batches)):
        recs = [pb.Record(msg=f"event id_{i} filler {pad}") for i in range(next_id, next_id + 2000)]
        try:
            ingest.Push(pb.PushRequest(records=recs))
        except grpc.RpcError as e:
            md = dict(e.trailing_metadata() or [])
            refused = [e.code().name, e.details(), md.get("grpc-retry-pushback-ms")]
            break
        acked += 2000
        next_id += 2000
    print(json.dumps({"acked": acked, "next": next_id, "refused": refused}))


def scenario_push_when_possible(grpc_addr, http_addr, start, seconds):
    """Retries one batch of 2,000 records (ids from START) until it is taken."""
    pb, pbg = stubs()
    ingest = pbg.IngestStub(grpc.insecure_channel(grpc_addr))
    recs = [pb.Record(msg=f"event id_{i} after") for i in range(int(start), int(start) + 2000)]
    began = time.time()
    while True:
        try:
            ingest.Push(pb.PushRequest(records=recs))
            print(json.dumps({"ok": True, "waited": time.time() - began}))
            return
        except grpc.RpcError as e:
            if time.time() - began > float(seconds):
                print(json.dumps({"ok": False, "last": [e.code().name, e.details()]}))
                return
            time.sleep(0.5)


if __name__ == "__main__":
    name, grpc_addr, http_addr, *rest = sys.argv[1:]
    scenarios = {
        "big_put": scenario_big_put,
        "queries_of_death": scenario_queries_of_death,
        "tenants_share_a_producer": scenario_tenants_share_a_producer,
        "schema_without_running": scenario_schema_without_running,
        "heavy_concurrent": scenario_heavy_concurrent,
        "fill": scenario_fill,
        "fill_disk": scenario_fill_disk,
        "push_when_possible": scenario_push_when_possible,
    }
    scenarios[name](grpc_addr, http_addr, *rest)
