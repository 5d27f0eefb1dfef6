"""Test helper for the DBOS peers (the harness produces in Rust).

  produce.py kafka --bootstrap 127.0.0.1:9092 --topic T --partitions 6 --count 20000 [--size 100]
  produce.py sqs --queue-name Q --count 2000 [--size 100]   # prints the queue URL

Kafka: creates the topic if missing (with --partitions), then produces --count
messages round-robin over the partitions. SQS: creates the queue (endpoint from
AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL, region us-east-1, dummy credentials),
sends --count messages in batches of 10 and prints the queue URL on stdout.
"""

import argparse
import os
import sys
import time


def kafka(args: argparse.Namespace) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    if args.topic not in admin.list_topics(timeout=10).topics:
        fut = admin.create_topics([NewTopic(args.topic, args.partitions, 1)])[args.topic]
        fut.result()
        # wait for the leaders
        for _ in range(100):
            md = admin.list_topics(args.topic, timeout=10).topics[args.topic]
            if md.error is None and len(md.partitions) == args.partitions and all(
                p.leader >= 0 for p in md.partitions.values()
            ):
                break
            time.sleep(0.1)
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    payload = b"x" * args.size
    start = time.monotonic()
    for i in range(args.count):
        while True:
            try:
                producer.produce(args.topic, value=payload, key=str(i).encode(),
                                 partition=i % args.partitions)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        sys.exit(f"produce.py: {remaining} messages not delivered")
    print(f"produced {args.count} messages to {args.topic} in {time.monotonic() - start:.2f} s",
          file=sys.stderr)


def sqs(args: argparse.Namespace) -> None:
    import boto3

    endpoint = os.environ.get("AWS_ENDPOINT_URL_SQS") or os.environ.get("AWS_ENDPOINT_URL")
    client = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )
    url = client.create_queue(QueueName=args.queue_name)["QueueUrl"]
    body = "x" * args.size
    start = time.monotonic()
    for base in range(0, args.count, 10):
        entries = [{"Id": str(i), "MessageBody": body} for i in range(base, min(base + 10, args.count))]
        resp = client.send_message_batch(QueueUrl=url, Entries=entries)
        if resp.get("Failed"):
            sys.exit(f"produce.py: failed entries {resp['Failed']}")
    print(f"sent {args.count} messages to {url} in {time.monotonic() - start:.2f} s", file=sys.stderr)
    print(url)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="kind", required=True)
    k = sub.add_parser("kafka")
    k.add_argument("--bootstrap", default="127.0.0.1:9092")
    k.add_argument("--topic", required=True)
    k.add_argument("--partitions", type=int, default=6)
    k.add_argument("--count", type=int, default=20000)
    k.add_argument("--size", type=int, default=100)
    s = sub.add_parser("sqs")
    s.add_argument("--queue-name", required=True)
    s.add_argument("--count", type=int, default=2000)
    s.add_argument("--size", type=int, default=100)
    args = p.parse_args()
    kafka(args) if args.kind == "kafka" else sqs(args)


if __name__ == "__main__":
    main()
