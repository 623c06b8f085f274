"""Every public class lists its constructor's parameters in a numpydoc ``Parameters`` section.

Issue 11, item 6: as River does, the docstring of each public class of ``kafka_ps.app``,
``kafka_ps.agents`` and ``kafka_ps.tables`` whose constructor takes parameters has a
``Parameters`` section (the heading underlined, indented as in a class body) naming each
one on its own line: each ``__init__`` argument, each dataclass field that is not a
``ClassVar``, each key of a ``TypedDict``, and each field of a pydantic(-settings) model
(its declared fields, not the ``_env_file``-style keywords pydantic-settings adds to
``__init__``; the settings classes list each field with its ``KPS_*`` variable).
Exceptions, enums, protocols and named tuples are left out: their constructors are not
what a reader configures.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import pkgutil
import re
import typing

import pytest

SUBPACKAGES = ("kafka_ps.app", "kafka_ps.agents", "kafka_ps.tables")

#: A ``Parameters`` section: its heading, its underline, and its body up to the next
#: numpydoc heading (a line underlined with dashes) or the end of the docstring.
_SECTION = re.compile(
    r"^(?P<indent> *)Parameters\n(?P=indent)-{10}\n(?P<body>.*?)(?=^ *\S[^\n]*\n *-{3,}\n|\Z)",
    re.M | re.S,
)


def _modules() -> list[str]:
    names = set(SUBPACKAGES)
    for package_name in SUBPACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            names.add(info.name)
    return sorted(names)


def _left_out(cls: type) -> bool:
    """Exceptions, enums, protocols and named tuples."""
    return (
        issubclass(cls, BaseException | enum.Enum)
        or bool(getattr(cls, "_is_protocol", False))
        or (issubclass(cls, tuple) and hasattr(cls, "_fields"))
    )


def _parameters(cls: type) -> list[str]:
    """The names a caller passes to construct ``cls`` (``*args``/``**kw`` as written)."""
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls) if f.init]
    if typing.is_typeddict(cls):
        return list(typing.get_type_hints(cls))
    model_fields = getattr(cls, "model_fields", None)
    if isinstance(model_fields, dict):
        return list(model_fields)
    if not any("__init__" in vars(base) for base in cls.__mro__ if base is not object):
        return []
    try:
        signature = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return []
    prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return [
        prefix.get(parameter.kind, "") + name
        for name, parameter in signature.parameters.items()
        if name != "self"
    ]


def _documented(doc: str) -> set[str] | None:
    """The names the ``Parameters`` section lists (``name``, ``name : type``, ``a, b``);
    None without a section."""
    match = _SECTION.search(doc)
    if match is None:
        return None
    lines = [line for line in match.group("body").splitlines() if line.strip()]
    if not lines:
        return set()
    indent = min(len(line) - len(line.lstrip()) for line in lines)
    return {
        name.strip()
        for line in lines
        if len(line) - len(line.lstrip()) == indent
        for name in line.split(":")[0].split(",")
    }


def _problem(cls: type) -> str | None:
    """What is wrong with ``cls``'s docstring, or None."""
    documented = _documented(cls.__doc__ or "")
    if documented is None:
        return "has no numpydoc 'Parameters' section"
    missing = [name for name in _parameters(cls) if name not in documented]
    if missing:
        return f"does not name {missing} in its 'Parameters' section"
    return None


def _cases() -> list[tuple[str, type]]:
    cases = []
    for module_name in _modules():
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and value.__module__ == module_name
                and not name.startswith("_")
                and not _left_out(value)
                and _parameters(value)
            ):
                cases.append((f"{module_name}.{name}", value))
    return cases


CASES = _cases()


def test_the_walk_reaches_every_layer():
    """A broken walk would check nothing and pass."""
    for package in SUBPACKAGES:
        assert any(qualified.startswith(f"{package}.") for qualified, _ in CASES), package
    assert len(CASES) > 50


@pytest.mark.parametrize("cls", [cls for _, cls in CASES], ids=[q for q, _ in CASES])
def test_public_class_lists_its_parameters(cls: type):
    problem = _problem(cls)
    assert problem is None, f"{cls.__module__}.{cls.__qualname__} {problem}"


def test_an_undocumented_class_is_caught():
    """A class without the section, or with a parameter left out, is reported."""

    class Undocumented:
        """No section."""

        def __init__(self, a: int, *rest: int, b: int = 1, **kw: int) -> None: ...

    class HalfDocumented:
        """Half.

        Parameters
        ----------
        a
            The first.
        """

        def __init__(self, a: int, b: int = 1) -> None: ...

    @dataclasses.dataclass
    class Documented:
        """All.

        Parameters
        ----------
        a, b : int
            Two.
        c
            Three.

        Notes
        -----
        d
            Not a parameter.
        """

        a: int
        b: int
        c: int
        d: typing.ClassVar[int] = 0

    assert _parameters(Undocumented) == ["a", "*rest", "b", "**kw"]
    assert _problem(Undocumented) == "has no numpydoc 'Parameters' section"
    assert _problem(HalfDocumented) == "does not name ['b'] in its 'Parameters' section"
    assert _parameters(Documented) == ["a", "b", "c"]
    assert _documented(Documented.__doc__ or "") == {"a", "b", "c"}
    assert _problem(Documented) is None
