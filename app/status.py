"""``kps status``: a job's processes, partitions, lag, throughput, loss and dead letters,
refreshing in the terminal (rich)."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.observe import JobSnapshot, JobWatcher


def render(settings: JobSettings, snapshot: JobSnapshot) -> Group:
    """The snapshot as rich tables: the job, its partitions, its logical workers."""
    loss = next(
        (k for r in snapshot.workers.values() for k in r if k in ("logloss", "rmse")), "loss"
    )
    dead = ", ".join(f"{k} {v:,}" for k, v in sorted(snapshot.dead_letters.items()))
    head = Text.from_markup(
        f"[bold]job[/] {settings.app_id}   [bold]broker[/] {settings.broker}\n"
        f"[bold]records learned[/] {snapshot.records:,}   "
        f"[bold]samples/s[/] {snapshot.samples_per_s:,.0f}   "
        f"[bold]dead letters[/] {dead or 'none'}"
    )
    partitions = Table(title="partitions", title_justify="left")
    for column in ("role", "partition", "owner (host member)", "lag"):
        partitions.add_column(column, justify="right" if column in ("partition", "lag") else "left")
    for role, states in snapshot.groups.items():
        for state in states:
            partitions.add_row(role, str(state.partition), state.owner, f"{state.lag:,}")
    workers = Table(title="logical workers (latest metrics window)", title_justify="left")
    for column in ("worker", "records", loss, f"window {loss}", "samples/s", "accuracy"):
        workers.add_column(column, justify="right")
    for worker, report in sorted(snapshot.workers.items()):
        accuracy = report.get("accuracy")
        workers.add_row(
            str(worker),
            f"{report.get('records', 0):,}",
            f"{report.get(loss, float('nan')):.4f}",
            f"{report.get(f'window_{loss}', float('nan')):.4f}",
            f"{report.get('samples_per_s', 0.0):,.0f}",
            "-" if accuracy is None else f"{accuracy:.4f}",
        )
    return Group(head, partitions, workers)


def show_status(settings: JobSettings, once: bool = False, interval: float = 2.0) -> None:
    """Print the job's status once, or refresh it every ``interval`` seconds until Ctrl-C."""
    watcher = JobWatcher(settings)
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    try:
        if once:
            console.print(render(settings, watcher.poll()))
            return
        with Live(render(settings, watcher.poll()), console=console, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(render(settings, watcher.poll()))
    finally:
        watcher.close()
