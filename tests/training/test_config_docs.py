"""docs/training.md documents every TrainConfig field, with its real default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from training.config import LOSS_NAMES, TrainConfig

DOC = Path(__file__).parents[2] / "docs" / "training.md"


def test_every_field_is_in_the_table_with_its_default():
    text = DOC.read_text()
    rows = {
        line.split("|")[1].strip(" `"): line.split("|")[2].strip(" `")
        for line in text.splitlines()
        if line.startswith("| `")
    }
    for field in dataclasses.fields(TrainConfig):
        assert field.name in rows, f"{field.name} is not documented in {DOC}"
        default = eval(rows[field.name], {"LOSS_NAMES": LOSS_NAMES})  # the source's own text
        assert default == field.default, field.name
