"""Progress bars on stderr for the CLI's long steps: producing, training, exporting a model.

They draw only when stderr is a terminal, so logs, pipes and tests see none of them; stdout
(the figures a command prints) is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

T = TypeVar("T")


class ProgressBar:
    """One task's bar: ``description``, a bar, done/total and the time elapsed.

    Parameters
    ----------
    description
        What is counted, shown before the bar.
    total
        How many make the task complete; None while unknown (the bar then pulses).
    console
        Where to draw; default stderr, and nothing unless it is a terminal.
    """

    def __init__(
        self, description: str, total: float | None = None, console: Console | None = None
    ) -> None:
        console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self.task = self.progress.add_task(description, total=total)

    def __enter__(self) -> ProgressBar:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def advance(self, amount: float = 1) -> None:
        self.progress.advance(self.task, amount)

    def update(self, completed: float, total: float | None = None) -> None:
        self.progress.update(self.task, completed=completed, total=total)


def tracked(
    items: Iterable[T],
    description: str,
    total: float | None = None,
    console: Console | None = None,
) -> Iterator[T]:
    """``items``, one by one, counted on a progress bar."""
    with ProgressBar(description, total, console) as bar:
        for item in items:
            yield item
            bar.advance()
