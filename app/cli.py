"""The ``kps`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator, Sized
from pathlib import Path
from typing import Any

from kafka_ps.agents.config import CONFIG_VARIABLE
from kafka_ps.app.cli_errors import EXIT_INTERRUPTED, EXIT_NOT_RUNNING, UsageError, failure
from kafka_ps.app.cli_settings import add_setting_flags, job_settings
from kafka_ps.app.local_kafka import LocalKafka
from kafka_ps.app.preflight import Access, require_access, require_broker


def _kafka(args: argparse.Namespace) -> int:
    secure = None
    if args.secure:
        from kafka_ps.app.secure_kafka import SecureLocalKafka

        secure = SecureLocalKafka()
    broker = secure or LocalKafka()
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
    print(status.detail)
    if secure is not None and status.running:
        print(secure.client_hint())
    return 0 if status.running else EXIT_NOT_RUNNING


def _check_model(model: str, params: dict[str, object]) -> None:
    """Build the model once here, so that a bad name or parameter fails before any process."""
    from kafka_ps.agents.jobs import load_logic

    try:
        load_logic(model, params)
    except (ValueError, TypeError, ImportError, AttributeError) as error:
        raise UsageError(f"model {model!r}: {error}") from None


def _host(args: argparse.Namespace) -> int:
    from kafka_ps.app.process import run_process

    run_process(args.job, job_settings(args))
    return 0


def _train(args: argparse.Namespace) -> int:
    from kafka_ps.app.stopping import bound_sigterm
    from kafka_ps.app.train import Stopped, run_training, stop_on_sigterm, training_settings

    configured = job_settings(args)
    settings = configured if args.until_end else training_settings(args.dataset, configured)
    if {"model", "model_params"} & configured.model_fields_set:
        _check_model(settings.model, settings.model_params)
    require_broker(settings.broker, settings.connect_timeout)
    stop_on_sigterm()
    bound_sigterm(settings.stop_timeout + 1.0)
    try:
        if args.until_end:
            from kafka_ps.agents.jobs import load_logic
            from kafka_ps.app.train import run_job

            task = load_logic(settings.model, settings.model_params).task
            summary = run_job(settings, None, task, args.workers, args.servers)
        else:
            summary = run_training(args.dataset, settings, args.workers, args.servers, args.limit)
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
    from kafka_ps.agents.client import produce
    from kafka_ps.agents.progress import tracked
    from kafka_ps.agents.topics import TopicSpec, ensure_topics
    from kafka_ps.app.datasets import DATASETS, load
    from kafka_ps.app.input_schema import schema_topic, write_numeric
    from kafka_ps.app.sources import read_file
    from kafka_ps.app.train import batched_training_records, training_records

    settings = job_settings(args)
    topic, partitions = settings.input_topic, settings.partitions
    source = None
    if args.file:
        numeric = None if args.numeric is None else [n for n in args.numeric.split(",") if n]
        source = read_file(
            Path(args.file),
            args.label,
            args.key,
            index_col=args.index_col,
            numeric=numeric,
            skip_bad=args.skip_bad,
        )
        records = source.records[: args.limit] if args.limit else source.records
        numeric, group_by = source.numeric, ()
    else:
        records = load(args.dataset, limit=args.limit)
        numeric, group_by = list(DATASETS[args.dataset].numeric), DATASETS[args.dataset].group_by
    require_broker(settings.broker, settings.connect_timeout)
    written = (topic, schema_topic(topic)) if source is not None or numeric else (topic,)
    require_access(settings.broker, Access(write=written), settings.connect_timeout)
    ensure_topics(settings.broker, [TopicSpec(topic, partitions)], timeout=10)
    if source is not None or numeric:
        write_numeric(settings.broker, topic, numeric)
    total = len(records) if isinstance(records, Sized) else None
    counted = _Counted(tracked(records, "producing records", total))
    if args.one_per_message:
        sent = produce(settings.broker, topic, training_records(counted, partitions, group_by))
        shape = "one per message"
    else:
        batched = batched_training_records(counted, partitions, group_by=group_by)
        sent = produce(settings.broker, topic, batched)
        shape = f"{sent:,} kps-batch messages"
    print(f"produced {counted.count:,} records to {topic} ({partitions} partitions, {shape})")
    if source is not None:
        print(f"numeric features: {', '.join(source.numeric) or 'none'}")
        if source.skipped:
            print(f"skipped {len(source.skipped):,} bad rows, the first: {source.skipped[0]}")
    return 0


class _Counted:
    """Iterates ``items``, counting them."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = items
        self.count = 0

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            self.count += 1
            yield item


def _health(args: argparse.Namespace) -> int:
    """A container's health: the job's broker answers (``HEALTHCHECK`` in docker/Dockerfile)."""
    settings = job_settings(args)
    require_broker(settings.broker, min(settings.connect_timeout, 5.0))
    print(f"ok: {settings.broker} answers")
    return 0


def _status(args: argparse.Namespace) -> int:
    from kafka_ps.app.status import show_status

    settings = job_settings(args)
    require_broker(settings.broker, settings.connect_timeout)
    show_status(settings, once=args.once, interval=args.interval)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from kafka_ps.app.plot import plot_learning_curve

    settings = job_settings(args)
    require_broker(settings.broker, settings.connect_timeout)
    try:
        points = plot_learning_curve(settings, Path(args.out))
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(f"wrote {args.out}: {points} metrics windows")
    return 0


def _exporter(args: argparse.Namespace) -> int:
    from kafka_ps.app.exporter import serve

    settings = job_settings(args)
    require_broker(settings.broker, settings.connect_timeout)
    print(f"serving job {settings.app_id}'s metrics on :{args.port}/metrics", flush=True)
    serve(settings, args.port, args.interval)
    return 0


def _model(args: argparse.Namespace) -> int:
    from kafka_ps.agents.model_export import export_npz
    from kafka_ps.agents.warm_start import load_warm_start

    settings = job_settings(args)
    require_broker(settings.broker, settings.connect_timeout)
    if args.topic:
        count = export_npz(settings.broker, args.topic, args.out)
    else:
        # The job's model: its warm start's values under those it has changed since.
        topic = settings.topic("model-updates")
        count = export_npz(settings.broker, topic, args.out, load_warm_start(settings))
    print(f"wrote {count:,} parameters to {args.out}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from kafka_ps.agents.settings import REPO_ROOT

    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # benchmarks/ ships in the checkout, not the package
    try:
        from benchmarks.bench import main as bench
    except ImportError as error:
        print(f"kps bench needs a kafka-ps checkout with the test extra: {error}", file=sys.stderr)
        return 1
    return bench(args.args)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from kafka_ps.app.datasets import DATASETS

    parser = _Parser(prog="kps", description=__doc__)
    parser.add_argument(
        "--config",
        default=None,
        metavar="PATH",
        help="a TOML settings file ([job], [kafka], [security]); default: KPS_CONFIG",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    kafka = commands.add_parser("kafka", help="the local Apache Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status", "wipe"])
    kafka.add_argument(
        "--secure",
        action="store_true",
        help="the broker with SASL_PLAINTEXT SCRAM-SHA-512 and ACLs (KPS_KAFKA_SECURE_PORT)",
    )
    kafka.set_defaults(handler=_kafka)

    hosting = "configured by flags, KPS_* variables and the settings file; runs until SIGTERM"
    serve = commands.add_parser(
        "serve", help="run a process that hosts shards of the job's parameters", epilog=hosting
    )
    add_setting_flags(serve)
    serve.set_defaults(handler=_host, job="server")
    learn = commands.add_parser(
        "learn",
        help="run a process that hosts logical workers (training partitions)",
        epilog=hosting,
    )
    add_setting_flags(learn)
    learn.set_defaults(handler=_host, job="worker")
    host = commands.add_parser(
        "host", help="run a process that hosts any job: server, worker or module:attribute"
    )
    host.add_argument("job", help="server (as kps serve), worker (as kps learn), module:attribute")
    add_setting_flags(host)
    host.set_defaults(handler=_host)
    # The old spelling: `kps worker --job server` is `kps serve`, `--job worker` `kps learn`.
    alias = commands.add_parser(
        "worker",
        help="the old spelling of kps host: --job JOB",
        description="The old spelling: --job server is kps serve, --job worker (the default) "
        "is kps learn, --job module:attribute is kps host module:attribute.",
    )
    alias.add_argument("--job", default="worker", help="server, worker, or module:attribute")
    add_setting_flags(alias)
    alias.set_defaults(handler=_host)

    for name, help_text in [
        ("train", "train on a data set end to end"),
        ("demo", "the main job: flights on two learning processes"),
    ]:
        train = commands.add_parser(
            name,
            help=help_text,
            epilog="A flag that sets a KPS_* setting wins over the environment, which wins "
            "over the settings file, which wins over the default. Without --until-end, the "
            "data set's own model is used when no model is configured, with the data set's "
            "hyper-parameters for it unless model parameters are configured.",
        )
        train.add_argument("--dataset", default="flights", choices=sorted(DATASETS))
        train.add_argument(
            "--until-end",
            action="store_true",
            help="learn what the input topic holds now (the job its settings name), then stop",
        )
        train.add_argument(
            "--workers", type=int, default=2, help="processes hosting logical workers (kps learn)"
        )
        train.add_argument(
            "--servers", type=int, default=1, help="processes hosting shards (kps serve)"
        )
        train.add_argument("--limit", type=int, default=None)
        add_setting_flags(train)
        train.set_defaults(handler=_train)

    produce = commands.add_parser(
        "produce", help="stream a data set or a file into a training topic (created if missing)"
    )
    produce.add_argument("--dataset", default="flights", choices=sorted(DATASETS))
    produce.add_argument(
        "--file", default=None, help="a .csv, .tsv, .jsonl or .parquet file instead of a data set"
    )
    produce.add_argument("--label", default="label", help="files: the label column")
    produce.add_argument("--key", default=None, help="files: the record-key column")
    produce.add_argument(
        "--index-col",
        default=None,
        help="files: an index column to drop (an unnamed first CSV column is dropped anyway)",
    )
    produce.add_argument(
        "--numeric",
        default=None,
        metavar="COLS",
        help="files: comma-separated numeric columns; default: every column of numbers",
    )
    produce.add_argument(
        "--skip-bad", action="store_true", help="files: leave out bad rows and count them"
    )
    produce.add_argument(
        "--one-per-message",
        action="store_true",
        help="one JSON record per Kafka message instead of kps-batch messages of 1000",
    )
    produce.add_argument("--limit", type=int, default=None)
    add_setting_flags(produce, aliases={"input_topic": "--topic"})
    produce.set_defaults(handler=_produce)

    status = commands.add_parser("status", help="the live job (KPS_APP_ID), refreshing")
    status.add_argument("--once", action="store_true", help="print one snapshot and exit")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    add_setting_flags(status)
    status.set_defaults(handler=_status)
    plot = commands.add_parser("plot", help="the job's learning curve as a PNG")
    plot.add_argument("--out", default="learning-curve.png")
    add_setting_flags(plot)
    plot.set_defaults(handler=_plot)
    exporter = commands.add_parser("exporter", help="serve the job's metrics to Prometheus")
    exporter.add_argument("--port", type=int, default=9108)
    exporter.add_argument("--interval", type=float, default=5.0, help="seconds between reads")
    add_setting_flags(exporter)
    exporter.set_defaults(handler=_exporter)

    health = commands.add_parser("health", help="exit 0 if the job's broker (KPS_BROKER) answers")
    add_setting_flags(health)
    health.set_defaults(handler=_health)

    model = commands.add_parser("model", help="read the model-updates topic into a .npz file")
    model.add_argument("--out", default="model.npz")
    model.add_argument(
        "--topic",
        default=None,
        help="default: <KPS_APP_ID>-model-updates over the job's KPS_WARM_START values",
    )
    add_setting_flags(model)
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
    """Run one ``kps`` command; a known failure ends in one line on stderr and its exit code
    (:mod:`app.cli_errors`)."""
    args = build_parser().parse_args(argv)
    if args.config:
        # Through the environment, so that the processes this one starts read it too.
        os.environ[CONFIG_VARIABLE] = str(Path(args.config).resolve())
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"kps {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        known = failure(error)
        if known is None:
            raise
        message, code = known
        print(f"kps {args.command}: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
