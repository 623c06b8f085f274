"""The package as a user gets it: a wheel installed into a fresh venv outside the checkout.

Builds the wheel from a copy of the source tree, installs it (with the ``data`` extra, by uv)
into a new venv in a temporary directory, and from another directory there starts a broker of
its own with an empty jar cache (Maven's local repository keeps that fast), trains the
flights demo and exports the model. State must land in the working directory, never in
site-packages.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.cli import free_port

REPO = Path(__file__).resolve().parents[2]
#: The set-up (docker/local.sh) installs uv beside pytest: it builds and installs the wheel as
#: pip would, in seconds instead of a minute and a half.
UV = Path(sys.executable).parent / "uv"


def _run(command: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{output[-4000:]}"
    return output


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".kps", "build", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    dist = tmp_path / "dist"
    _run([UV, "build", "--quiet", "--wheel", "--out-dir", dist, source], tmp_path, dict(os.environ))
    (wheel,) = dist.glob("kafka_ps-*.whl")
    return wheel


def test_a_wheel_installed_anywhere_starts_a_broker_trains_and_exports(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, dict(os.environ))
    install = [UV, "pip", "install", "--quiet", "--python", venv / "bin/python", f"{wheel}[data]"]
    _run(install, tmp_path, dict(os.environ))

    work = tmp_path / "work"
    work.mkdir()
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("KPS_")}
    env.pop("PYTHONPATH", None)
    env.update(
        KPS_KAFKA_PORT=str(port),
        KPS_KAFKA_CONTROLLER_PORT=str(free_port()),
        KPS_KAFKA_CACHE=str(tmp_path / "empty-jar-cache"),
        KPS_BROKER=f"127.0.0.1:{port}",
    )
    kps = venv / "bin/kps"
    try:
        assert "running" in _run([kps, "kafka", "start"], work, env)
        trained = _run([kps, "train", "--dataset", "flights", "--limit", "20000"], work, env)
        assert "done: 20,000 records" in trained, trained
        run = re.search(r"^job (\S+):", trained, re.MULTILINE)
        assert run is not None, trained
        exported = _run(
            [kps, "model", "--out", "model.npz"], work, {**env, "KPS_APP_ID": run.group(1)}
        )
        assert re.search(r"wrote [1-9][\d,]* parameters", exported), exported
        with np.load(work / "model.npz") as model:
            assert len(model.files) > 0
    finally:
        subprocess.run([kps, "kafka", "stop"], cwd=work, env=env, check=False, timeout=120)

    site = next((venv / "lib").glob("python3*/site-packages"))
    installed = _run(
        [venv / "bin/python", "-c", "import kafka_ps.app as app; print(app.__file__)"], work, env
    ).strip()
    assert Path(installed).is_relative_to(site / "kafka_ps"), installed
    # One import name of its own: nothing that could collide with another project's ``app``.
    assert not (site / "app").exists() and not (site / "agents").exists()
    assert not (site / "tables").exists()
    assert (site / "kafka_ps" / "app" / "kafka_files" / "pom.xml").is_file()
    assert not list(site.rglob(".kps")), "state written into site-packages"
    assert (work / ".kps" / "kafka" / "broker.log").is_file()
    assert (work / ".kps" / "data" / run.group(1)).is_dir()
    assert (tmp_path / "empty-jar-cache" / "kafka-4.0.2" / "libs" / ".complete").is_file()
