"""S3 and Flight helpers for the object-storage end-to-end tests, built from
clients no one here wrote: boto3 (installed with moto) and pyarrow.flight.

Usage:
  python s3_tool.py create-bucket ENDPOINT BUCKET
  python s3_tool.py list ENDPOINT BUCKET PREFIX      -> {"keys": {key: size, ...}}
  python s3_tool.py action GRPC_ADDR NAME            -> the action's JSON result
"""
import json
import sys

import boto3
import pyarrow.flight as fl


def s3(endpoint):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )


def main():
    cmd, *args = sys.argv[1:]
    if cmd == "create-bucket":
        endpoint, bucket = args
        s3(endpoint).create_bucket(Bucket=bucket)
        print(json.dumps({"created": bucket}))
    elif cmd == "list":
        endpoint, bucket, prefix = args
        keys = {}
        for page in s3(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                keys[o["Key"]] = o["Size"]
        print(json.dumps({"keys": keys}))
    elif cmd == "action":
        grpc_addr, name = args
        c = fl.connect(f"grpc://{grpc_addr}")
        out = [json.loads(r.body.to_pybytes()) for r in c.do_action(fl.Action(name, b""))]
        print(json.dumps(out[0] if out else None))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
