"""scripts/make_bundle.py: the model card says the target is missed exactly when it is."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _make_bundle():
    spec = importlib.util.spec_from_file_location("make_bundle", ROOT / "scripts/make_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scores(val: float, held_out: float, relation: float) -> dict:
    real = {"mean": 1.0}
    return {
        "val": {"generated": {"mean": val, "relation": relation}, "real": real},
        "test_heldout": {"generated": {"mean": held_out}, "real": real},
    }


def test_the_target_needs_all_three_figures() -> None:
    meets_target = _make_bundle().meets_target
    assert meets_target(_scores(0.90, 0.75, 0.80))
    assert not meets_target(_scores(0.89, 0.75, 0.80))
    assert not meets_target(_scores(0.95, 0.74, 0.90))
    assert not meets_target(_scores(0.95, 0.80, 0.79))


def test_the_bundled_card_carries_the_limits_section_it_should() -> None:
    module = _make_bundle()
    bundle = ROOT / "models/bundled/default"
    scores = json.loads((bundle / "scores.json").read_text())
    card = (bundle / "MODEL_CARD.md").read_text()
    assert not module.meets_target(scores)
    assert card.endswith(module.LIMITS_SECTION)
    assert (bundle / "../../../docs/cpu-preset.md").resolve().is_file()  # its link
