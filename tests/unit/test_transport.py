"""The Faust transport's commit, on a stand-in for Faust's consumer."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import cast

import faust
import pytest

from kafka_ps.agents.transport import FaustTransport


class Consumer:
    """Faust's consumer as the commit sees it: ``commit()`` answers from ``answers``."""

    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.calls = 0

    async def commit(self) -> bool:
        self.calls += 1
        return self.answers.pop(0)


@pytest.mark.parametrize(
    ("answers", "calls"),
    [
        ([True], 1),  # committed
        ([False, True], 2),  # another commit was under way: what it missed is committed after
        ([False, False], 2),  # nothing acknowledged to commit
    ],
)
def test_a_commit_asked_for_is_made_even_when_another_is_under_way(
    answers: list[bool], calls: int
) -> None:
    consumer = Consumer(answers)
    transport = FaustTransport(cast(faust.App, SimpleNamespace(consumer=consumer)), "")

    async def commit() -> None:
        transport.commit()
        await asyncio.gather(*transport.commits)

    asyncio.run(commit())
    assert consumer.calls == calls
    assert not transport.commits
