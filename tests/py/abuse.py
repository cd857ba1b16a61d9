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


HEAVY = [
    # group-by over every distinct id
    "* | stats count() by (id) | sort by (count()) desc | limit 3",
    # a regex near the size limit over every message
    "_msg:~\"(" + "|".join(f"word{i}[0-9]+x" for i in range(300)) + ")\" | stats count()",
    # an unbounded time range, sorted in full
    "* | sort by (_msg) desc | limit 5",
    # distinct values of everything
    "* | stats count_uniq(id), count_uniq(_msg)",
]


def scenario_heavy_storm(grpc_addr, http_addr, n, seconds):
    """N clients loop heavy queries for SECONDS: what they got."""
    deadline = time.time() + float(seconds)
    codes = {}
    lock = threading.Lock()

    def heavy(k):
        c = fl.connect(f"grpc://{grpc_addr}")
        i = k
        while time.time() < deadline:
            q = HEAVY[i % len(HEAVY)]
            i += 1
            code, _ = try_flight(lambda: c.do_get(fl.Ticket(q.encode())).read_all())
            with lock:
                codes[code] = codes.get(code, 0) + 1

    threads = [threading.Thread(target=heavy, args=(k,)) for k in range(int(n))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"heavy_codes": codes}))


def scenario_light_latency(grpc_addr, http_addr, seconds):
    """A light query (a needle, one match) every 100 ms for SECONDS, from a
    process of its own: what each got and its latency."""
    deadline = time.time() + float(seconds)
    c = fl.connect(f"grpc://{grpc_addr}")
    light = []
    codes = {}
    while time.time() < deadline:
        started = time.time()
        code, got = try_flight(lambda: count(c, "id_1"))
        light.append(time.time() - started)
        key = code if code != "OK" or got == 1 else "WRONG"
        codes[key] = codes.get(key, 0) + 1
        time.sleep(0.1)
    light.sort()
    pick = lambda p: light[min(len(light) - 1, int(len(light) * p))]
    print(json.dumps({"light_codes": codes, "light_n": len(light), "light_p50": pick(0.5),
                      "light_p99": pick(0.99), "light_max": light[-1]}))


def scenario_fill(grpc_addr, http_addr, n, pad="0"):
    """Pushes N records with distinct ids (field `id`), messages padded with PAD
    more bytes."""
    pb, pbg = stubs()
    ingest = pbg.IngestStub(grpc.insecure_channel(grpc_addr, options=[("grpc.max_send_message_length", 64 << 20)]))
    n = int(n)
    for start in range(0, n, 20000):
        recs = []
        for i in range(start, min(n, start + 20000)):
            r = pb.Record(msg=f"event id_{i} done {'p' * int(pad)}")
            r.fields.add(name="id", str=f"request-{i}")
            recs.append(r)
        ingest.Push(pb.PushRequest(records=recs))
    print(json.dumps({"pushed": n}))


def scenario_fill_disk(grpc_addr, http_addr, start, batches):
    """Pushes batches of 2,000 records (ids from START) until one is refused for
    another reason than the flush backlog (pushed back: waits as told and sends
    the batch again, as a client does); what was acknowledged and the refusal."""
    pb, pbg = stubs()
    ingest = pbg.IngestStub(grpc.insecure_channel(grpc_addr, options=[("grpc.max_send_message_length", 64 << 20)]))
    acked, refused = 0, None
    next_id = int(start)
    pad = "x" * 100
    deadline = time.time() + 300
    for _ in range(int(batches)):
        recs = [pb.Record(msg=f"event id_{i} filler {pad}") for i in range(next_id, next_id + 2000)]
        while True:
            try:
                ingest.Push(pb.PushRequest(records=recs))
                break
            except grpc.RpcError as e:
                md = dict(e.trailing_metadata() or [])
                hint = md.get("grpc-retry-pushback-ms")
                if "wait to be flushed" in (e.details() or "") and hint and time.time() < deadline:
                    time.sleep(int(hint) / 1000)
                    continue
                refused = [e.code().name, e.details(), hint]
                break
        if refused:
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


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, payload):
    """A length-delimited protobuf field."""
    return varint((num << 3) | 2) + varint(len(payload)) + payload


def scenario_protocol_abuse(grpc_addr, http_addr):
    """Malformed Arrow IPC and protobuf, oversized messages, many streams, slow
    HTTP clients: each refused or survived; the server keeps serving."""
    import socket
    seen = {}
    ch = grpc.insecure_channel(grpc_addr, options=[("grpc.max_send_message_length", 64 << 20)])
    do_put = ch.stream_stream("/arrow.flight.protocol.FlightService/DoPut",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)

    def put_raw(messages):
        try:
            list(do_put(iter(messages), timeout=20))
            return "OK"
        except grpc.RpcError as e:
            return e.code().name

    # FlightData: descriptor = 1, data_header = 2 (an IPC message flatbuffer),
    # app_metadata = 3, data_body = 1000.
    seen["ipc_garbage_header"] = put_raw([field(2, b"\xff" * 64) + field(1000, b"abc")])
    seen["ipc_truncated_header"] = put_raw([field(2, b"\x10\x00\x00\x00\x0c\x00")])
    seen["ipc_body_without_schema"] = put_raw([field(1000, b"\x00" * 4096)])
    seen["not_protobuf"] = put_raw([b"\xff\xfe\xfd\xfc" * 16])
    seen["huge_message"] = put_raw([field(1000, b"\x00" * (20 << 20))])
    # Schema, then a batch whose body is cut short.
    t = pa.table({"_msg": pa.array(["a", "b", "c"])})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)
    buf = sink.getvalue().to_pybytes()
    # Stream messages: continuation + length + flatbuffer + body; split the first two.
    def messages(b):
        out, at = [], 0
        while at + 8 <= len(b):
            n = int.from_bytes(b[at + 4:at + 8], "little")
            if n == 0:
                break
            meta = b[at + 8:at + 8 + n]
            out.append(meta)
            at += 8 + n
            # The body length is in the flatbuffer; the rest of this test only
            # needs the first message (the schema) whole.
            break
        return out
    schema_msg = messages(buf)
    seen["schema_then_garbage_batch"] = put_raw([field(2, schema_msg[0]) if schema_msg else b"",
                                                 field(2, b"\x08\x00\x00\x00" * 8) + field(1000, b"\x01" * 100)])
    # Many concurrent streams: PushStream calls on one connection and on many.
    pb, pbg = stubs()
    codes = []
    lock = threading.Lock()

    def streamer(channel, k):
        stub = pbg.IngestStub(channel)

        def batches():
            for j in range(3):
                yield pb.PushRequest(records=[pb.Record(msg=f"stream {k} batch {j}")])
        try:
            stub.PushStream(batches(), timeout=60)
            code = "OK"
        except grpc.RpcError as e:
            code = e.code().name
        with lock:
            codes.append(code)

    shared = grpc.insecure_channel(grpc_addr)
    chans = [grpc.insecure_channel(grpc_addr) for _ in range(30)]
    threads = [threading.Thread(target=streamer, args=(shared if k < 200 else chans[k % 30], k)) for k in range(300)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    seen["streams"] = {c: codes.count(c) for c in set(codes)}
    # Slow HTTP clients: connections that send half a request and stall.
    host, port = http_addr.rsplit(":", 1)
    slow = []
    for _ in range(200):
        c = socket.create_connection((host, int(port)))
        c.sendall(b"POST /insert/jsonl HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"_msg\":")
        slow.append(c)
    req = urllib.request.Request(f"http://{http_addr}/insert/jsonl", data=b'{"_msg":"while slow clients wait"}\n',
                                 method="POST")
    seen["http_while_slow"] = urllib.request.urlopen(req, timeout=10).status
    for c in slow:
        c.close()
    # Oversized and malformed HTTP bodies.
    def post(body):
        try:
            r = urllib.request.urlopen(urllib.request.Request(f"http://{http_addr}/insert/jsonl", data=body,
                                                              method="POST"), timeout=30)
            return r.status
        except urllib.error.HTTPError as e:
            return e.code
    # An oversized body: announced by its length, answered before it is sent (a
    # client sending it all would meet the closed connection).
    big = socket.create_connection((host, int(port)), timeout=30)

    def send_big():
        try:
            big.sendall(f"POST /insert/jsonl HTTP/1.1\r\nHost: x\r\nContent-Length: {20 << 20}\r\n\r\n".encode())
            chunk = b"x" * 65536
            for _ in range(320):
                big.sendall(chunk)
        except OSError:
            pass  # the server stopped reading: refused

    sender = threading.Thread(target=send_big)
    sender.start()
    try:
        status_line = big.recv(1024).split(b"\r\n", 1)[0].decode(errors="replace")
        parts = status_line.split()
        seen["http_oversized"] = int(parts[1]) if len(parts) > 1 else "closed"
    except OSError:
        seen["http_oversized"] = "closed"
    sender.join()
    big.close()
    seen["http_malformed"] = post(b"{not json\n")
    seen["http_binary"] = post(bytes(range(256)) * 10)
    c = fl.connect(f"grpc://{grpc_addr}")
    seen["after"] = count(c, "stream") + count(c, "slow")
    print(json.dumps(seen))


def scenario_slow_reader(grpc_addr, http_addr, seconds):
    """A DoGet client that reads one batch, then stalls SECONDS; the slot is free
    again meanwhile (another query runs), and the stream ends with an error."""
    c = fl.connect(f"grpc://{grpc_addr}")
    reader = c.do_get(fl.Ticket(b"* | fields _msg, id"))
    first = reader.read_chunk()
    time.sleep(float(seconds))
    running = metric(http_addr, "heimdall_queries_running")
    other = count(fl.connect(f"grpc://{grpc_addr}"), "id_1")
    code, detail = try_flight(lambda: reader.read_all().num_rows)
    print(json.dumps({"first_rows": first.data.num_rows, "running_after_stall": running,
                      "other": other, "end": code, "detail": str(detail)[:200]}))


def scenario_mixed_load(grpc_addr, http_addr, state_dir, seconds):
    """Ingest until the server dies (or SECONDS pass): two gRPC producers with
    idempotent sequence numbers, one HTTP JSON-lines writer. Every acknowledged
    batch is appended to STATE_DIR/acked.txt ("first next" id ranges) right after
    its answer. A gRPC batch sent but not answered is kept in STATE_DIR/pending-K
    and sent again (same producer and sequence) by the next run, first: stored once
    whether or not its first try was. Ids come from STATE_DIR/next-id."""
    pb, pbg = stubs()
    lock = threading.Lock()
    next_path = os.path.join(state_dir, "next-id")
    next_id = [int(open(next_path).read()) if os.path.exists(next_path) else 0]
    acked = open(os.path.join(state_dir, "acked.txt"), "a", buffering=1)
    deadline = time.time() + float(seconds)

    def take(n):
        with lock:
            first = next_id[0]
            next_id[0] += n
            with open(next_path + ".tmp", "w") as f:
                f.write(str(next_id[0]))
                f.flush()
                os.fsync(f.fileno())
            os.replace(next_path + ".tmp", next_path)
            return first

    def note(first, n):
        with lock:
            acked.write(f"{first} {first + n}\n")
            acked.flush()
            os.fsync(acked.fileno())

    def recs(first, n):
        out = []
        for i in range(first, first + n):
            r = pb.Record(msg=f"event id_{i} mixed load")
            r.fields.add(name="n", i64=i)
            out.append(r)
        return out

    def grpc_worker(k):
        stub = pbg.IngestStub(grpc.insecure_channel(grpc_addr))
        pending = os.path.join(state_dir, f"pending-{k}")
        seq_path = os.path.join(state_dir, f"seq-{k}")
        seq = int(open(seq_path).read()) if os.path.exists(seq_path) else 1
        while time.time() < deadline:
            if os.path.exists(pending):
                p_seq, first, n = map(int, open(pending).read().split())
            else:
                p_seq, first, n = seq, take(40), 40
                with open(pending, "w") as f:
                    f.write(f"{p_seq} {first} {n}")
                    f.flush()
                    os.fsync(f.fileno())
            try:
                stub.Push(pb.PushRequest(producer_id=f"torture-{k}", sequence=p_seq, records=recs(first, n)),
                          timeout=10)
            except grpc.RpcError:
                return
            note(first, n)
            seq = p_seq + 1
            with open(seq_path, "w") as f:
                f.write(str(seq))
                f.flush()
                os.fsync(f.fileno())
            os.remove(pending)

    def http_worker():
        while time.time() < deadline:
            first = take(30)
            body = "".join(json.dumps({"_msg": f"event id_{i} mixed load", "n": i}) + "\n"
                           for i in range(first, first + 30)).encode()
            try:
                r = urllib.request.urlopen(urllib.request.Request(
                    f"http://{http_addr}/insert/jsonl", data=body, method="POST"), timeout=10)
                if r.status != 200:
                    return
            except Exception:
                return
            note(first, 30)

    ts = [threading.Thread(target=grpc_worker, args=(k,)) for k in range(2)]
    ts.append(threading.Thread(target=http_worker))
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps({"next_id": next_id[0]}))


def scenario_overload(grpc_addr, http_addr, threads, seconds):
    """THREADS writers push 2,000-record batches as fast as they can for SECONDS,
    backing off as told when refused; what they got, and the rate of acknowledged
    records over each second."""
    pb, pbg = stubs()
    lock = threading.Lock()
    seen = {"ok": 0, "refused": 0, "hinted": 0, "other": []}
    per_second = {}
    deadline = time.time() + float(seconds)
    began = time.time()
    pad = "y" * 80

    def worker(k):
        stub = pbg.IngestStub(grpc.insecure_channel(grpc_addr, options=[("grpc.max_send_message_length", 64 << 20)]))
        i = 0
        while time.time() < deadline:
            recs = [pb.Record(msg=f"overload {k} {i} {j} {pad}") for j in range(2000)]
            i += 1
            try:
                stub.Push(pb.PushRequest(records=recs), timeout=30)
                with lock:
                    seen["ok"] += 1
                    sec = int(time.time() - began)
                    per_second[sec] = per_second.get(sec, 0) + 2000
            except grpc.RpcError as e:
                md = dict(e.trailing_metadata() or [])
                with lock:
                    if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        seen["refused"] += 1
                        if "grpc-retry-pushback-ms" in md:
                            seen["hinted"] += 1
                    elif len(seen["other"]) < 5:
                        seen["other"].append([e.code().name, e.details()])
                time.sleep(int(md.get("grpc-retry-pushback-ms", "100")) / 1000.0)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(int(threads))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    seen["records_per_second"] = [per_second.get(s, 0) for s in range(int(float(seconds)))]
    print(json.dumps(seen))


def scenario_stored_ids(grpc_addr, http_addr, below, field="n", tenant=""):
    """How many times each id (FIELD, default n) below BELOW is stored in TENANT:
    duplicates and the distinct ids. Counted in windows of time, each holding at
    most WINDOW records (from a count per 10 s bucket first), so that every query
    stays within the group limit and reads only its own blocks: tens of millions
    of records are checked in one pass over the data."""
    c = fl.connect(f"grpc://{grpc_addr}")

    def rows(query):
        t = {"query": query}
        if tenant:
            t["tenant"] = tenant
        return c.do_get(fl.Ticket(json.dumps(t).encode())).read_all().to_pylist()

    # Every record of the tenant (a `FIELD:*` filter would look up every distinct
    # value's term: tens of millions); those without FIELD are left out below.
    buckets = sorted((r["_time"], r["count()"])
                     for r in rows("* | stats count() by (_time:10s)"))
    window = 400_000
    windows, start, held = [], None, 0
    for i, (b, n) in enumerate(buckets):
        if start is not None and held + n > window:
            windows.append((start, b))
            start, held = None, 0
        if start is None:
            start = b
        held += n
    if start is not None:
        windows.append((start, None))
    counts = {}
    for a, z in windows:
        upper = f"{z})" if z else "2100-01-01T00:00:00Z)"
        for r in rows(f"_time:[{a}, {upper} | stats count() by ({field})"):
            if r[field] is not None and int(r[field]) < int(below):
                counts[int(r[field])] = counts.get(int(r[field]), 0) + r["count()"]
    print(json.dumps({"dupes": [[k, v] for k, v in counts.items() if v != 1][:20],
                      "ids": sorted(counts)}))


def scenario_count(grpc_addr, http_addr, query, tenant=""):
    """The count of QUERY's matches in TENANT."""
    print(json.dumps({"count": count(fl.connect(f"grpc://{grpc_addr}"), query, tenant or None)}))


if __name__ == "__main__":
    name, grpc_addr, http_addr, *rest = sys.argv[1:]
    scenarios = {
        "big_put": scenario_big_put,
        "queries_of_death": scenario_queries_of_death,
        "tenants_share_a_producer": scenario_tenants_share_a_producer,
        "schema_without_running": scenario_schema_without_running,
        "heavy_concurrent": scenario_heavy_concurrent,
        "heavy_storm": scenario_heavy_storm,
        "light_latency": scenario_light_latency,
        "fill": scenario_fill,
        "fill_disk": scenario_fill_disk,
        "push_when_possible": scenario_push_when_possible,
        "protocol_abuse": scenario_protocol_abuse,
        "slow_reader": scenario_slow_reader,
        "mixed_load": scenario_mixed_load,
        "stored_ids": scenario_stored_ids,
        "count": scenario_count,
        "overload": scenario_overload,
    }
    scenarios[name](grpc_addr, http_addr, *rest)
