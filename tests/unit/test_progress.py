"""Progress bars draw on a terminal, stay silent elsewhere, and count what passes."""

from __future__ import annotations

import io

from rich.console import Console

from kafka_ps.agents.progress import ProgressBar, tracked


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=100), out


def test_tracked_yields_every_item_and_draws_the_count_on_a_terminal() -> None:
    console, out = _console(terminal=True)
    assert list(tracked(range(7), "producing records", total=7, console=console)) == list(range(7))
    drawn = out.getvalue()
    assert "producing records" in drawn and "7/7" in drawn


def test_nothing_is_drawn_when_the_output_is_not_a_terminal() -> None:
    console, out = _console(terminal=False)
    assert sum(tracked(range(5), "producing records", console=console)) == 10
    assert out.getvalue() == ""


def test_a_bar_follows_updates_of_done_and_total() -> None:
    console, out = _console(terminal=True)
    with ProgressBar("learning (input messages)", console=console) as bar:
        bar.update(30, total=120)
        bar.update(120, total=120)
    assert "120/120" in out.getvalue()
