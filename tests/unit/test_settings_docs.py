"""Each setting is documented once, in its ``Field(description=...)``: the class docstring's
``Parameters`` section and docs/operations.md's settings table are made from it (issue 16)."""

from __future__ import annotations

from pathlib import Path

from kafka_ps.agents.config import parameters_section
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.cli_settings import env_name, flag_name

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
BEGIN = "<!-- settings table: generated from JobSettings' field descriptions;"
END = "<!-- end of settings table -->"


def settings_table() -> str:
    """docs/operations.md's table of the job settings, as the model describes them."""
    rows = ["| variable | flag | default | description |", "| --- | --- | --- | --- |"]
    for name, field in JobSettings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, Path):
            default = default.relative_to(Path.cwd())
        shown = f"`{default}`" if default not in ("", None) else "none"
        if isinstance(default, dict):
            shown = "`{}`"
        text = str(field.description).replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| `{env_name(name)}` | `{flag_name(name)}` | {shown} | {text} |")
    return "\n".join(rows)


def test_the_operations_guides_settings_table_is_the_models() -> None:
    text = OPERATIONS.read_text()
    begin = text.index("\n", text.index(BEGIN)) + 1
    found = text[begin : text.index(END)].strip()
    expected = settings_table()
    assert found == expected, f"put this between the markers in {OPERATIONS}:\n{expected}"


def test_every_setting_has_a_description() -> None:
    undescribed = [
        name for name, field in JobSettings.model_fields.items() if not field.description
    ]
    assert undescribed == []


def test_the_docstring_lists_each_setting_with_its_description() -> None:
    doc = JobSettings.__doc__ or ""
    assert doc.rstrip().endswith(parameters_section(JobSettings))
    flat = " ".join(doc.split())
    for name, field in JobSettings.model_fields.items():
        assert f"\n{name}\n" in doc
        assert f"``{env_name(name)}``: {' '.join(str(field.description).split())}" in flat
