"""The ``kps`` command line."""

from __future__ import annotations

import argparse
import sys

from app.local_kafka import LocalKafka, LocalKafkaError
from app.settings import JobSettings


def _kafka(args: argparse.Namespace) -> int:
    broker = LocalKafka()
    try:
        if args.action == "start":
            status = broker.start()
        elif args.action == "stop":
            print("stopped" if broker.stop() else "not running")
            return 0
        elif args.action == "wipe":
            broker.wipe()
            print("wiped")
            return 0
        else:
            status = broker.status()
    except LocalKafkaError as error:
        print(f"kps kafka {args.action}: {error}", file=sys.stderr)
        return 1
    print(status.detail)
    return 0 if status.running else 3


def _worker(args: argparse.Namespace) -> int:
    from app.worker import run_worker

    run_worker(args.job, JobSettings())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from app.demo import run_demo

    return run_demo(args.records)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kps", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    kafka = commands.add_parser("kafka", help="the local Apache Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status", "wipe"])
    kafka.set_defaults(handler=_kafka)
    worker = commands.add_parser("worker", help="run a worker process (configured by KPS_* env)")
    worker.add_argument("--job", default="counter", help="which job's agents to host")
    worker.set_defaults(handler=_worker)
    demo = commands.add_parser("demo", help="the smoke demo: count keyed increments")
    demo.add_argument("--records", type=int, default=5000)
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
