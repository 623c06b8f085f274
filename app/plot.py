"""``kps plot``: a job's learning curve, from its metrics topic, as a PNG (matplotlib)."""

from __future__ import annotations

from pathlib import Path

from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.observe import JobWatcher, learning_curve


def plot_learning_curve(settings: JobSettings, out: Path) -> int:
    """Draw progressive (window) loss and samples/s over records learned; return the points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    watcher = JobWatcher(settings)
    try:
        watcher.read_metrics(timeout=5.0)
        history = watcher.snapshot.history
    finally:
        watcher.close()
    curve = learning_curve(history)
    if not curve:
        raise ValueError(f"no metrics reports in {settings.topic('metrics')} yet")
    records, loss, rate = zip(*curve, strict=True)
    name = next((k for k in history[-1] if k.startswith("window_")), "window_loss")[7:]
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    top.plot(records, loss, marker=".")
    top.set_ylabel(f"progressive {name} (window)")
    top.set_title(f"kafka-ps job {settings.app_id}")
    bottom.plot(records, rate, marker=".", color="tab:green")
    bottom.set_ylabel("samples/s (all workers)")
    bottom.set_xlabel("records learned")
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return len(curve)
