"""The layers read top-down (app -> agents -> tables) and live under one import name."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYERS = ("app", "agents", "tables")


def test_the_layers_contract_holds() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_nothing_imports_a_layer_by_its_bare_name() -> None:
    # A bare ``import app`` would load a second copy of the module, outside the contract.
    bare = re.compile(r"^\s*(from|import) (app|agents|tables)\b", re.MULTILINE)
    offenders = [
        f"{path.relative_to(REPO)}: {match.group(0).strip()}"
        for folder in (*LAYERS, "tests", "benchmarks")
        for path in (REPO / folder).rglob("*.py")
        for match in bare.finditer(path.read_text())
    ]
    assert offenders == []


def test_the_checkout_links_each_layer_under_kafka_ps() -> None:
    for layer in LAYERS:
        link = REPO / "kafka_ps" / layer
        assert link.is_symlink() and link.resolve() == REPO / layer


def test_the_documented_layers_are_the_contracts_layers() -> None:
    import tomllib

    contract = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in contract["contracts"] if c["type"] == "layers"]
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `\w+/` \| `(kafka_ps\.\w+)` \|", section, re.MULTILINE)
    assert documented == layers
