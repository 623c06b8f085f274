"""The bench's plain-text tables, rendered from the same dictionary it writes as JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.cpu import BROKER, DRIVER

MISMATCH = "MISMATCH"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def number(value: float | None, digits: int = 0) -> str:
    """``1,234`` or ``0.4468``; ``-`` for a figure that does not apply, ``n/a`` for NaN."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def counted(row: Mapping[str, Any]) -> str:
    text = number(row["records_counted"])
    return text if row["records_counted"] == row["records_produced"] else f"{text} {MISMATCH}"


def versus_river(
    title: str, section: Mapping[str, Any], loss: str, river_name: str, loss_name: str
) -> str:
    """River, the raw consume rate if measured, then each kafka-ps run with its ratios."""
    river, raw = section["river"], section.get("raw_consume")
    header = [title, "records", "counted", "samples/s", loss_name]
    header += ["x River speed", f"x River {loss_name}", "x raw consume"]
    rows = [
        [
            *(river_name, number(river["records"]), "-", number(river["samples_per_s"])),
            *(number(river[loss], 4), "1", "1", "-"),
        ]
    ]
    if raw:
        rows.append(
            [
                *(f"confluent-kafka consume({raw['batch']})", number(raw["messages"]), "-"),
                *(number(raw["messages_per_s"]), "-", "-", "-", "1"),
            ]
        )
    for run in section["kafka_ps"]:
        rows.append(
            [
                *(f"kafka-ps {run['name']}", number(run["records_produced"]), counted(run)),
                *(number(run["samples_per_s"]), number(run[loss], 4)),
                *(number(run["vs_river_samples_per_s"], 4), number(run[f"vs_river_{loss}"], 4)),
                number(run.get("vs_raw_consume"), 4),
            ]
        )
    if not raw:  # no transport baseline for this data set: leave its column out
        header, rows = header[:-1], [row[:-1] for row in rows]
    return table(header, rows)


def freshness_lines(runs: Sequence[Mapping[str, Any]]) -> str:
    """One line per paced run, or that there were none."""
    return "\n".join(map(freshness_line, runs)) if runs else "freshness: skipped"


def freshness_line(freshness: Mapping[str, Any]) -> str:
    where = (
        f"kafka-ps {freshness['name']} paced at {number(freshness['rate_per_s'])} records/s, "
        f"{number(freshness['covered'])} of {number(freshness['records'])} records covered"
    )
    if freshness["p50_ms"] is None:
        return f"freshness ({where}): p50 n/a, p99 n/a (no __marks__ records on model-updates)"
    return (
        f"freshness ({where}): p50 {number(freshness['p50_ms'])} ms, "
        f"p99 {number(freshness['p99_ms'])} ms"
    )


def wire_table(runs: Sequence[Mapping[str, Any]]) -> str:
    topics = list(runs[0]["bytes_per_update"]) if runs else []
    rows = [
        [
            f"kafka-ps {run['dataset']} {run['name']}",
            number(run["key_updates"]),
            *(number(run["bytes_per_update"][topic], 1) for topic in topics),
        ]
        for run in runs
    ]
    return table(["bytes per applied key update", "key updates", *topics], rows)


#: The process readings of a kafka-ps run that are not learning or server processes.
OTHER_PROCESSES = (BROKER, DRIVER)


def processes(run: Mapping[str, Any], job: str) -> str:
    """The CPU-seconds per 1,000 samples of each of a run's ``job`` processes, ``a+b``."""
    cpu = run["cpu_per_1k"]
    return "+".join(number(cpu[name], 3) for name in cpu if name.startswith(f"{job}-"))


def cpu_table(sections: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """CPU-seconds per 1,000 samples: per data set, River's, then each kafka-ps run's by
    process (``-`` for a broker that was not measured) with the total and its ratio."""
    header = ["CPU-seconds per 1,000 samples", "learning", "server", *OTHER_PROCESSES]
    rows = []
    for river_name, section in sections:
        river = section["river"]
        rows.append([river_name, "-", "-", "-", "-", number(river["cpu_per_1k"], 3), "1"])
        for run in section["kafka_ps"]:
            rows.append(
                [
                    f"kafka-ps {run['dataset']} {run['name']}",
                    *(processes(run, "worker"), processes(run, "server")),
                    *(number(run["cpu_per_1k"].get(name), 3) for name in OTHER_PROCESSES),
                    number(run["cpu_per_1k_total"], 3),
                    number(run["vs_river_cpu"], 2),
                ]
            )
    return table([*header, "total", "x River"], rows)


def render(report: Mapping[str, Any]) -> str:
    """Every table of a bench report, separated by blank lines, then any mismatch."""
    flights = report["flights"]
    river_lr, river_mf = "River LogisticRegression", "River reco.BiasedMF"
    parts = [
        versus_river("flights", flights, "logloss", river_lr, "logloss"),
        freshness_lines(flights.get("freshness") or []),
    ]
    runs = list(flights["kafka_ps"])
    cpu = [(f"{river_lr} (flights)", flights)]
    if report.get("mf"):
        parts.append(versus_river("ML-100K", report["mf"], "rmse", river_mf, "RMSE"))
        runs += report["mf"]["kafka_ps"]
        cpu.append((f"{river_mf} (ML-100K)", report["mf"]))
    parts += [wire_table(runs), cpu_table(cpu)]
    parts += [f"{MISMATCH}: {problem}" for problem in report["mismatches"]]
    return "\n\n".join(parts)
