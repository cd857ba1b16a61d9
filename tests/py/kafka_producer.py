"""Kafka producer for the end-to-end tests, with kafka-python (a client no one here
wrote). Messages are JSON lines {"id": N, "_msg": "..."}; id N goes to partition
N % PARTITIONS so every partition gets a share.

  produce BROKER TOPIC START END PARTITIONS [SECONDS]
      ids START..END-1, spread evenly over SECONDS (0: as fast as possible)
  poison BROKER TOPIC PARTITION MAX_BYTES
      one of each message Heimdall cannot read (bad JSON, not UTF-8, no value,
      over MAX_BYTES), each followed by a good one with ids 900000000 + k;
      prints the offsets of the poison messages as JSON
"""

import json
import sys
import time

from kafka import KafkaProducer


def producer(broker):
    return KafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=5,
                         max_request_size=8 << 20)


def produce(broker, topic, start, end, partitions, seconds=0.0):
    p = producer(broker)
    n = end - start
    t0 = time.time()
    for k, i in enumerate(range(start, end)):
        body = json.dumps({"id": i, "_msg": f"event id={i} from the e2e producer"})
        p.send(topic, body.encode(), partition=i % partitions)
        if seconds > 0 and k % 100 == 0:
            p.flush()
            due = t0 + seconds * k / n
            if due > time.time():
                time.sleep(due - time.time())
    p.flush()
    p.close()


def poison(broker, topic, partition, max_bytes):
    p = producer(broker)
    bad = [b"{not json", b"\xff\xfe\xfd", None, b'{"_msg": "' + b"x" * (max_bytes + 10) + b'"}']
    offsets = []
    for k, value in enumerate(bad):
        md = p.send(topic, value=value, key=b"k", partition=partition).get(timeout=30)
        offsets.append(md.offset)
        good = json.dumps({"id": 900000000 + k, "_msg": "after a poison message"})
        p.send(topic, good.encode(), partition=partition).get(timeout=30)
    p.flush()
    p.close()
    print(json.dumps({"offsets": offsets}))


def main():
    cmd = sys.argv[1]
    if cmd == "produce":
        broker, topic, start, end, parts = sys.argv[2:7]
        seconds = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
        produce(broker, topic, int(start), int(end), int(parts), seconds)
    elif cmd == "poison":
        broker, topic, partition, max_bytes = sys.argv[2:6]
        poison(broker, topic, int(partition), int(max_bytes))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
