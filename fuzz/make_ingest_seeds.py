"""Writes the seeds of the ingest conversion fuzz targets (fuzz/seeds/push_convert,
fuzz/seeds/arrow_convert): protobuf pushes built with the real protobuf runtime from
server/proto, and Arrow IPC streams written by pyarrow, covering every column type
DoPut accepts and some it refuses. Run with the test venv's Python:
    ~/.cache/heimdall-test-venv/bin/python fuzz/make_ingest_seeds.py
"""
import math
import os
import sys
import tempfile

import pyarrow as pa
from grpc_tools import protoc

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
gen = tempfile.mkdtemp()
proto_dir = os.path.join(root, "server", "proto")
if protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={gen}", "heimdall/v1/ingest.proto"]) != 0:
    sys.exit("protoc failed")
sys.path.insert(0, gen)
from heimdall.v1 import ingest_pb2 as pb  # noqa: E402


def write(target, name, data):
    with open(os.path.join(root, "fuzz", "seeds", target, name), "wb") as f:
        f.write(data)


# --- protobuf pushes
def rec(msg, **kw):
    r = pb.Record(msg=msg, time_unix_nano=kw.get("t", 0), level=kw.get("level", ""))
    for k, v in kw.get("stream", {}).items():
        r.stream[k] = v
    for name, v in kw.get("fields", []):
        f = r.fields.add(name=name)
        if isinstance(v, bool):
            f.bool = v
        elif isinstance(v, int):
            f.i64 = v
        elif isinstance(v, float):
            f.f64 = v
        elif isinstance(v, str):
            f.str = v
    return r


pushes = {
    "plain": pb.PushRequest(records=[rec("GET /index.html 200")]),
    "tenant_producer": pb.PushRequest(
        tenant="acme", producer_id="p-1", sequence=7, stream={"service": "api"},
        records=[rec("user login failed", t=1_700_000_000_000_000_000, level="WARN",
                     stream={"host": "h1"},
                     fields=[("user", "bob"), ("attempts", 3), ("ratio", 0.25), ("ok", False)])],
    ),
    "floats": pb.PushRequest(records=[rec("m", fields=[("nan", math.nan), ("inf", math.inf), ("neg", -0.0)])]),
    "bad_field_name": pb.PushRequest(records=[rec("m", fields=[("_time", "x")])]),
    "empty_label": pb.PushRequest(stream={"": "v"}, records=[rec("m")]),
    "no_value": pb.PushRequest(records=[pb.Record(msg="m", fields=[pb.Field(name="f")])]),
    "bad_tenant": pb.PushRequest(tenant="../x", records=[rec("m")]),
    "many": pb.PushRequest(records=[rec(f"line {i}", fields=[(f"k{i % 5}", i)]) for i in range(40)]),
}
for name, req in pushes.items():
    write("push_convert", name, req.SerializeToString())


# --- Arrow IPC streams (first byte: the DoPut command variant)
def ipc(table, pick=0):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        for b in table.to_batches(max_chunksize=3):
            w.write_batch(b)
    return bytes([pick]) + sink.getvalue().to_pybytes()


n = 5
tables = {
    "basic": pa.table({"_msg": [f"m{i}" for i in range(n)]}),
    "all_types": pa.table({
        "_time": pa.array([1_700_000_000_000 + i for i in range(n)], pa.timestamp("ms")),
        "_msg": pa.array(["a", None, "c", "d", "e"], pa.large_string()),
        "level": ["INFO", "WARN", None, "ERROR", "DEBUG"],
        "host": ["h1", "h2", "h1", None, "h3"],
        "i8": pa.array([1, -2, None, 4, 5], pa.int8()),
        "u64": pa.array([1, 2**63 + 5, None, 4, 5], pa.uint64()),
        "f32": pa.array([0.5, None, float("nan"), 1.0, -1.0], pa.float32()),
        "f64": [0.1, float("inf"), None, 2.0, 3.0],
        "b": [True, False, None, True, False],
    }),
    "time_ns_int": pa.table({"_time": pa.array([1, 2, 3, None, 5], pa.int64()), "_msg": ["a"] * n}),
    "time_s": pa.table({"_time": pa.array([2**62, 1, 2, 3, 4], pa.timestamp("s")), "_msg": ["a"] * n}),
    "string_view": pa.table({"_msg": pa.array(["x" * 20, "y", None, "z", ""], pa.string_view())}),
    "bad_type": pa.table({"_msg": ["a"] * n, "l": pa.array([[1], [2], [], None, [3]], pa.list_(pa.int64()))}),
    "no_msg": pa.table({"host": ["h"] * n}),
    "reserved": pa.table({"_msg": ["a"] * n, "_x": [1] * n}),
    "dict": pa.table({"_msg": pa.array(["a", "b", "a", "b", "a"]).dictionary_encode()}),
}
for name, t in tables.items():
    write("arrow_convert", name, ipc(t))
write("arrow_convert", "all_types_stream_fields", ipc(tables["all_types"], 3))
print(f"{len(pushes)} push seeds, {len(tables) + 1} arrow seeds")
