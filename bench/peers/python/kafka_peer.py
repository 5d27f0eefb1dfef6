"""The DBOS Python Kafka peer of the benchmark harness.

One `@DBOS.kafka_consumer` workflow per message, with one step that does trivial
work (the payload length times two), the same shape as exactly's bench workflow.
The system database is the one named by --database-url, created and migrated by
DBOS at launch.

Prints READY (flushed) once DBOS is launched and its consumer group holds the
topic's partitions, then runs until SIGTERM or SIGINT and exits 0.
See bench/peers/README.md for the workflow IDs and the SQL the harness polls.
"""

import os
import signal

# A signal before DBOS is up has nothing to clean up: exit 0 at once (replaced below).
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
signal.signal(signal.SIGINT, lambda *_: os._exit(0))

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from dbos import DBOS, DBOSConfig, KafkaMessage  # noqa: E402

APP_NAME = "exactly-bench-dbos-python"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/peers/run dbos-python-kafka")
    p.add_argument("--database-url", required=True, help="system database (postgres URL)")
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--topic", required=True)
    p.add_argument("--group", default="exactly-bench-dbos-python")
    p.add_argument(
        "--batch-size",
        type=int,
        default=250,
        help="messages consumed and durably enqueued per batch (DBOS default 250)",
    )
    p.add_argument(
        "--queue-polling-sec",
        type=float,
        default=None,
        help="kafka_queue_polling_interval_sec (DBOS default 1.0)",
    )
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args()


def log(msg: str) -> None:
    print(f"dbos-python-kafka: {msg}", file=sys.stderr, flush=True)


class Assignment:
    """Watches the consumer's own statistics (librdkafka's stats_cb, served by DBOS's
    consume loop) for the group to be joined with partitions assigned.

    The consumer's own view, so nothing but the consumer talks to the broker (an admin
    client's requests can hit a librdkafka assertion when the broker goes away)."""

    def __init__(self) -> None:
        self.ready = threading.Event()

    def on_stats(self, stats_json: str) -> None:
        if self.ready.is_set():
            return
        try:
            cgrp = json.loads(stats_json).get("cgrp") or {}
        except ValueError:
            return
        if cgrp.get("join_state") == "steady" and cgrp.get("assignment_size", 0) > 0:
            self.ready.set()

    def wait(self, timeout_sec: float, stop: threading.Event) -> bool:
        deadline = time.monotonic() + timeout_sec
        while time.monotonic() < deadline and not stop.is_set():
            if self.ready.wait(0.05):
                return True
        return self.ready.is_set()


def main() -> None:
    args = parse_args()

    config: DBOSConfig = {
        "name": APP_NAME,
        "system_database_url": args.database_url,
        "log_level": args.log_level,
    }
    if args.queue_polling_sec is not None:
        config["kafka_queue_polling_interval_sec"] = args.queue_polling_sec
    DBOS(config=config)

    assignment = Assignment()

    @DBOS.step()
    def double_length(n: int) -> int:
        return n * 2

    @DBOS.kafka_consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            # Only to tell when partitions are assigned (READY); see Assignment.
            "statistics.interval.ms": 500,
            "stats_cb": assignment.on_stats,
        },
        [args.topic],
        batch_size=args.batch_size,
    )
    @DBOS.workflow(name="bench_message")
    def bench_message(msg: KafkaMessage) -> int:
        return double_length(len(msg.value or b""))

    stop = threading.Event()

    def on_signal(signum, _frame):  # noqa: ANN001
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    DBOS.launch()
    if not assignment.wait(120.0, stop) and not stop.is_set():
        log("the consumer group has no partition of the topic after 120 s; printing READY anyway")
    if not stop.is_set():
        print("READY", flush=True)

    while not stop.wait(0.5):
        pass
    try:
        DBOS.destroy()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # Worker threads of DBOS or librdkafka must not hold the exit.
        os._exit(0)


if __name__ == "__main__":
    main()
