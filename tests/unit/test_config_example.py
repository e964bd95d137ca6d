"""``jtrades.toml.example`` is what the README sends a user to for every key: a key missing from
it is a setting nobody finds (seven of the Tradovate session's were)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import BaseModel

from jtrades.config import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "jtrades.toml.example"


def _documented() -> dict[str, set[str]]:
    """Section -> the keys the example sets or shows commented out (``# key = …``)."""
    keys: dict[str, set[str]] = {"": set()}
    section = ""
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^\[(\w+)\]", line):
            section = m.group(1)
            keys.setdefault(section, set())
        elif m := re.match(r"^#?\s*([a-z_]+)\s*=", line):
            keys[section].add(m.group(1))
    return keys


def test_the_example_names_every_setting() -> None:
    documented = _documented()
    missing = []
    for name, field in Settings.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            missing += [
                f"{name}.{key}" for key in kind.model_fields if key not in documented.get(name, ())
            ]
        elif name not in documented[""]:
            missing.append(name)
    assert missing == []


def test_the_example_is_valid_toml_that_loads_as_settings(tmp_path: Path) -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    data.pop("data_dir", None)  # a path of the machine the example was written on
    assert Settings.model_validate({**data, "data_dir": tmp_path}).tradovate.heartbeat_s == 2.5
