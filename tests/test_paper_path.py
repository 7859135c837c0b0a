"""The paper's path and the project's experiments stay apart (issue 30): a reader of
models/losses.py, training/objectives.py and the trainer's phases never meets an experiment
switch, and those switches are read in their room (training/experiments/,
models/discriminator_variants.py) alone."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# TrainConfig's experiment switches, DiscriminatorConfig's variants and the old helpers' names
EXPERIMENT_NAMES = {
    "swap_negatives",
    "w_swap",
    "w_mismatch",
    "d_coords",
    "d_sentence_head",
    "coords",
    "sentence_head",
    "hard_negatives",
    "encode_negatives",
    "pair_ranking_loss",
}


def _names(tree: ast.AST) -> set[str]:
    """Every identifier a piece of code reads, writes or takes as a parameter."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            found.add(node.arg)
        elif isinstance(node, ast.alias):
            found.add(node.asname or node.name.split(".")[-1])
    return found


def test_the_paper_path_names_no_experiment() -> None:
    from training.trainer import Trainer

    for relative in ("models/losses.py", "training/objectives.py", "models/discriminator.py"):
        met = _names(ast.parse((ROOT / relative).read_text())) & EXPERIMENT_NAMES
        assert not met, f"{relative} meets {sorted(met)}"
    for phase in ("sub_batches", "discriminator_step", "joint_step"):
        source = inspect.getsource(getattr(Trainer, phase))
        tree = ast.parse("class _T:\n" + source)
        met = _names(tree) & EXPERIMENT_NAMES
        assert not met, f"Trainer.{phase} meets {sorted(met)}"


def test_experiment_switches_are_read_in_their_room_alone() -> None:
    switches = {"swap_negatives", "w_swap", "w_mismatch", "d_coords", "d_sentence_head"}
    room = ROOT / "training" / "experiments"
    for folder in ("models", "training", "xmc_service"):
        for path in (ROOT / folder).rglob("*.py"):
            if room in path.parents:
                continue
            tree = ast.parse(path.read_text())
            read = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
            assert not read & switches, f"{path.relative_to(ROOT)} reads {sorted(read & switches)}"


def test_d_variants_are_read_by_their_module_alone() -> None:
    for path in (ROOT / "models").rglob("*.py"):
        if path.name in ("discriminator_variants.py", "caption_paths.py"):
            continue
        tree = ast.parse(path.read_text())
        read = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not read & {"coords", "sentence_head"}, f"{path.relative_to(ROOT)}"


def test_g_meets_its_caption_paths_through_their_functions_alone() -> None:
    """models/generator.py never names a path's module: it calls the `caption_paths` functions,
    each the identity when its path is off (models/caption_paths.py)."""
    tree = ast.parse((ROOT / "models" / "generator.py").read_text())
    modules = {"sentence_head", "token_layer", "word_coords", "coarse_attention"}
    read = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not read & modules, f"models/generator.py reads {sorted(read & modules)}"
    called = {
        n.func.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "caption_paths"
    }
    assert called == {
        "add_paths",
        "reset_identity",
        "read_tokens",
        "start",
        "after_global_block",
        "locate_queries",
    }
