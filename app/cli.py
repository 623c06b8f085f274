"""The ``kps`` command line."""

from __future__ import annotations

import argparse
import json
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


def _train(args: argparse.Namespace) -> int:
    from app.train import Stopped, run_training, stop_on_sigterm

    overrides: dict[str, object] = {
        name: value
        for name, value in (
            ("batch_size", args.batch_size),
            ("partitions", args.partitions),
            ("shards", args.shards),
            ("export_on_exit", args.export_on_exit),
            ("warm_start", args.warm_start),
        )
        if value is not None
    }
    if args.model:
        overrides["model"] = args.model
    if args.model_params:
        overrides["model_params"] = json.loads(args.model_params)
    stop_on_sigterm()
    try:
        if args.until_end:
            from agents.jobs import load_logic
            from app.train import run_job

            settings = JobSettings().model_copy(update=overrides)
            task = load_logic(settings.model, settings.model_params).task
            summary = run_job(settings, None, task, args.workers, args.servers)
        else:
            summary = run_training(
                args.dataset, args.workers, args.servers, args.limit, **overrides
            )
    except (Stopped, KeyboardInterrupt):
        print("stopped before the end of the input", flush=True)
        return 0
    accuracy = f", accuracy {summary.accuracy:.4f}" if summary.accuracy is not None else ""
    name = "logloss" if summary.accuracy is not None else "RMSE"
    print(
        f"done: {summary.records:,} records in {summary.seconds:.1f}s "
        f"({summary.samples_per_s:,.0f} samples/s), progressive {name} {summary.loss:.4f}"
        f"{accuracy}"
    )
    return 0


def _produce(args: argparse.Namespace) -> int:
    from app.client import produce
    from app.datasets import load
    from app.train import training_records

    settings = JobSettings()
    if args.file:
        from pathlib import Path

        from app.sources import read_file

        records = read_file(Path(args.file), args.label, args.key)
    else:
        records = load(args.dataset, limit=args.limit)
    sent = produce(
        settings.broker,
        args.topic or settings.input_topic,
        training_records(records, args.partitions, 10_000),
    )
    print(f"produced {sent:,} records")
    return 0


def _model(args: argparse.Namespace) -> int:
    from app.model_export import export_npz
    from app.warm_start import load_warm_start

    settings = JobSettings()
    if args.topic:
        count = export_npz(settings.broker, args.topic, args.out)
    else:
        # The job's model: its warm start's values under those it has changed since.
        topic = settings.topic("model-updates")
        count = export_npz(settings.broker, topic, args.out, load_warm_start(settings))
    print(f"wrote {count:,} parameters to {args.out}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from app.settings import REPO_ROOT

    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # benchmarks/ ships in the checkout, not the package
    try:
        from benchmarks.bench import main as bench
    except ImportError as error:
        print(f"kps bench needs a kafka-ps checkout with the test extra: {error}", file=sys.stderr)
        return 1
    return bench(args.args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kps", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    kafka = commands.add_parser("kafka", help="the local Apache Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status", "wipe"])
    kafka.set_defaults(handler=_kafka)

    worker = commands.add_parser("worker", help="run a worker process (configured by KPS_* env)")
    worker.add_argument(
        "--job", default="worker", help="what the process hosts: worker, server, counter"
    )
    worker.set_defaults(handler=_worker)

    for name, help_text in [
        ("train", "train on a data set end to end"),
        ("demo", "the main job: flights on two worker processes"),
    ]:
        train = commands.add_parser(name, help=help_text)
        train.add_argument("--dataset", default="flights")
        train.add_argument(
            "--until-end",
            action="store_true",
            help="learn what KPS_INPUT_TOPIC holds now (job set by KPS_* variables), then stop",
        )
        train.add_argument("--workers", type=int, default=2, help="worker processes")
        train.add_argument("--servers", type=int, default=1, help="server (shard) processes")
        train.add_argument("--limit", type=int, default=None)
        train.add_argument("--model", default=None, help="model name or package.module:factory")
        train.add_argument("--model-params", default=None, help="JSON hyper-parameters")
        train.add_argument(
            "--batch-size", type=int, default=None, help="records per mini-batch (default 1024)"
        )
        train.add_argument("--partitions", type=int, default=None, help="training partitions (2)")
        train.add_argument("--shards", type=int, default=None, help="parameter shards (4)")
        train.add_argument(
            "--export-on-exit",
            default=None,
            metavar="PATH",
            help="write the model to this .npz when the job ends or is stopped (SIGTERM)",
        )
        train.add_argument(
            "--warm-start",
            default=None,
            metavar="SOURCE",
            help="start parameters from a .npz file or topic:<model-updates topic>",
        )
        train.set_defaults(handler=_train)

    produce = commands.add_parser("produce", help="stream a data set into a training topic")
    produce.add_argument("--dataset", default="flights")
    produce.add_argument("--file", default=None, help="a .jsonl or .csv file instead of a data set")
    produce.add_argument("--label", default="label", help="CSV: the label column")
    produce.add_argument("--key", default=None, help="CSV: the record-key column")
    produce.add_argument("--topic", default=None, help="default: KPS_INPUT_TOPIC")
    produce.add_argument("--partitions", type=int, default=4)
    produce.add_argument("--limit", type=int, default=None)
    produce.set_defaults(handler=_produce)

    model = commands.add_parser("model", help="read the model-updates topic into a .npz file")
    model.add_argument("--out", default="model.npz")
    model.add_argument(
        "--topic",
        default=None,
        help="default: <KPS_APP_ID>-model-updates over the job's KPS_WARM_START values",
    )
    model.set_defaults(handler=_model)

    bench = commands.add_parser(
        "bench",
        help="kafka-ps against River and the raw transport, side by side (kps bench -h)",
        add_help=False,
        prefix_chars="\0",  # every argument goes to benchmarks.bench, -h included
    )
    bench.add_argument("args", nargs=argparse.REMAINDER)
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
