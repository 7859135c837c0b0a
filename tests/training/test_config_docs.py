"""docs/training.md documents every TrainConfig field, as `section.field`, with its real
default, and names every network field a run may set."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from training.config import DERIVED, LOSS_NAMES, NETWORKS, SECTIONS, TrainConfig

DOC = Path(__file__).parents[2] / "docs" / "training.md"


def _rows() -> dict[str, str]:
    """First column -> second column of every table row whose first cell is code."""
    return {
        line.split("|")[1].strip(" `"): line.split("|")[2].strip(" `")
        for line in DOC.read_text().splitlines()
        if line.startswith("| `")
    }


def test_every_field_is_in_the_tables_with_its_default():
    rows = _rows()
    fields = [("preset", TrainConfig.preset)]
    for section, kind in SECTIONS.items():
        fields += [(f"{section}.{f.name}", f.default) for f in dataclasses.fields(kind)]
    for name, default in fields:
        assert name in rows, f"{name} is not documented in {DOC}"
        assert eval(rows[name], {"LOSS_NAMES": LOSS_NAMES}) == default, name  # the source's text
    documented = {name for name in rows if re.fullmatch(r"[a-z_]+\.[a-z_0-9]+", name)}
    assert documented == {name for name, _ in fields if "." in name}  # and no retired name


def test_every_network_field_a_run_may_set_is_named():
    rows = _rows()
    for network, kind in NETWORKS.items():
        assert rows[network] == "{}", network
        row = next(
            line for line in DOC.read_text().splitlines() if line.startswith(f"| `{network}`")
        )
        for field in dataclasses.fields(kind):
            if f"{network}.{field.name}" not in DERIVED:
                assert f"`{field.name}`" in row, f"{network}.{field.name} is not in {DOC}"
