"""The faust-streaming fixes kafka-ps applies, and the one module that touches Faust's private
names, checked on Faust's own classes and on kafka-ps's source."""

from __future__ import annotations

import ast
import asyncio
from importlib.metadata import version
from pathlib import Path

import pytest
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from kafka_ps.agents.faust_compat import FaustPatchError, apply_faust_patches, check_faust_names

ROOT = Path(__file__).parents[2]
#: The one module allowed to touch the libraries' private names.
COMPAT = ROOT / "agents" / "faust_compat.py"
LIBRARIES = {"faust", "mode", "aiokafka"}
#: Names kafka-ps gives to Faust, mode and aiokafka objects: a private attribute read on one
#: of them (``x.consumer._read_offset``) belongs in the compatibility module.
LIBRARY_OBJECTS = {
    "agent", "app", "channel", "conf", "consumer", "event", "manual", "producer",
    "recovery", "stream", "table", "tables", "topic", "transport", "worker",
}  # fmt: skip


def test_a_resume_while_flowing_keeps_queued_messages() -> None:
    apply_faust_patches(10)

    async def scenario() -> list[str]:
        flow = FlowControlEvent(initially_suspended=True)
        queue: FlowControlQueue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        queue.put_nowait("before the rebalance")
        flow.resume()  # suspended -> flowing: stale messages are dropped, as Faust intends
        assert queue.empty()
        queue.put_nowait("first message at the committed offset")
        flow.resume()  # already flowing: must not drop it
        return [queue.get_nowait() for _ in range(queue.qsize())]

    assert asyncio.run(scenario()) == ["first message at the committed offset"]


def test_the_table_manager_starts_without_waiting_a_second() -> None:
    apply_faust_patches(10)
    steps: list[str] = []

    class Manager:
        should_stop = False

        async def _update_channels(self) -> None:
            steps.append("channels")

        class recovery:  # the attribute Faust's manager has
            @staticmethod
            async def start() -> None:
                steps.append("recovery")

    async def start() -> float:
        started = asyncio.get_running_loop().time()
        await TableManager.on_start(Manager())  # type: ignore[arg-type]
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(start()) < 0.5  # Faust's own waits 1.0 s
    assert steps == ["channels", "recovery"]


def test_the_private_names_exist_in_the_installed_libraries() -> None:
    check_faust_names()


def test_a_missing_class_name_stops_with_one_line_naming_it_and_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(Recovery, "active_remaining")
    with pytest.raises(FaustPatchError, match=r"Recovery\.active_remaining is gone") as error:
        check_faust_names()
    assert f"faust-streaming {version('faust-streaming')}" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_instance_attribute_stops_with_one_line_naming_it() -> None:
    def __init__(self: object) -> None:
        self.renamed = 0  # type: ignore[attr-defined]

    with pytest.raises(FaustPatchError, match=r"self\._kept is gone") as error:
        check_faust_names([], [(__init__, "_kept")])
    assert "\n" not in str(error.value)


def private_touches(source: str) -> list[str]:
    """Private names of Faust, mode or aiokafka that ``source`` touches: imported, read on
    an object named as one of theirs, named in ``getattr`` and kin, or overridden in (or
    reached through ``super()`` from) a subclass of one of their classes."""
    tree = ast.parse(source)
    found = []
    library_names = set(LIBRARIES)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
            library_names.update(alias.asname or alias.name for alias in node.names)
            names = [*node.module.split("."), *(alias.name for alias in node.names)]  # type: ignore[union-attr]
            found += [f"import {name}" for name in names if _private(name)]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in LIBRARIES:
                    library_names.add((alias.asname or alias.name).split(".")[0])
                    if any(_private(part) for part in alias.name.split(".")):
                        found.append(f"import {alias.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
            if name in LIBRARY_OBJECTS:
                found.append(f"{name}.{node.attr}")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in _REFLECTION:
            found += [
                f"{node.func.id}(..., {arg.value!r})"  # type: ignore[attr-defined]
                for arg in node.args[1:2]
                if isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and _private(arg.value)
            ]
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            ast.unparse(base).split(".")[0] in library_names for base in node.bases
        ):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) and _private(
                    inner.name
                ):
                    found.append(f"{node.name}.{inner.name}")
                elif (
                    isinstance(inner, ast.Attribute)
                    and _private(inner.attr)
                    and isinstance(inner.value, ast.Call)
                    and getattr(inner.value.func, "id", None) == "super"
                ):
                    found.append(f"super().{inner.attr}")
    return found


_REFLECTION = {"getattr", "setattr", "hasattr", "delattr"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_only_the_compatibility_module_touches_private_library_names() -> None:
    touches = {
        str(path.relative_to(ROOT)): found
        for layer in ("agents", "app", "tables")
        for path in sorted((ROOT / layer).rglob("*.py"))
        if path != COMPAT and (found := private_touches(path.read_text()))
    }
    assert touches == {}


@pytest.mark.parametrize(
    "source",
    [
        "x = app.consumer._read_offset",
        "recovery._recovery_started_at",
        "getattr(stream, '_processors')",
        "from faust.transport._cython import x",
        "import faust\nclass W(faust.Worker):\n    def _on_sigterm(self): pass",
        "from faust import Worker\nclass W(Worker):\n    def go(self): super()._on_sigint()",
    ],
)
def test_the_static_check_finds_a_private_touch(source: str) -> None:
    assert private_touches(source)


def test_the_static_check_lets_kafka_ps_own_private_names_be() -> None:
    source = "class Rule(Base):\n    def _check(self): return super()._check() + self._x"
    assert private_touches(source) == []
