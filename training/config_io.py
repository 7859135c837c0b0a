"""A TrainConfig to and from JSON and the command line.

`train_config` builds one from a config.json's "train" object; `upgrade` is the one place
where an older run's record is brought to today's form (the flat "train" dict of up to 55 fields
that runs wrote before the config nested, and network configs holding the retired one-value
fields); `parse_overrides` and `apply_overrides` turn `--set section.field=value` into
typed values.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from models.config import config_from_dict, get_preset
from training.config import NETWORKS, SECTIONS, OptimConfig, TrainConfig

# where each field of the old flat "train" dict lives now (a section field unless noted)
_RENAMED = {"data": "data.source"}
# the old fields that restated a network config's field, with the value that meant "the
# preset's": any other value becomes a change of that network field
_RESTATED: dict[str, tuple[str, Any]] = {
    "gf_dim": ("generator.gf_dim", 0),
    "df_dim": ("discriminator.df_dim", 0),
    "text_encoder": ("text_encoder.name_or_path", ""),
    "pooling": ("text_encoder.pooling", ""),
    "infomax": ("discriminator.infomax", False),
    "infomax_local": ("discriminator.infomax_local", "penultimate"),
}


def _flat_names() -> dict[str, str]:
    """Old flat field name -> its dotted place now (sections' fields kept their names)."""
    names: dict[str, str] = {}
    for section, kind in SECTIONS.items():
        names.update({f.name: f"{section}.{f.name}" for f in dataclasses.fields(kind)})
    names.update(_RENAMED)
    names.update({old: new for old, (new, _) in _RESTATED.items()})
    return names


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """An old flat "train" dict as today's nested one (the same run)."""
    names = _flat_names()
    unknown = sorted(set(flat) - set(names) - {"preset"})
    if unknown:
        raise ValueError(f"an old flat training config with unknown fields {unknown}")
    preset = get_preset(flat.get("preset", TrainConfig.preset))
    nested: dict[str, Any] = {"preset": flat.get("preset", TrainConfig.preset)}
    for old, value in flat.items():
        if old == "preset":
            continue
        section, name = names[old].split(".")
        if old in _RESTATED:
            keep = _RESTATED[old][1]
            if value == keep or value == getattr(getattr(preset, section), name):
                continue  # the preset's own value: no change
        nested.setdefault(section, {})[name] = value
    if nested.get("optim", {}).get("global_batch"):  # it decided; batch_size was not read
        nested["optim"]["batch_size"] = OptimConfig.batch_size
    return nested


def upgrade(described: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded configuration (config.json, a checkpoint's "config") in today's form:
    a flat "train" dict nested, network configs re-read (retired one-value fields dropped,
    fields added since filled with their defaults). Today's records come back equal."""
    upgraded = copy.deepcopy(described)
    train = upgraded.get("train", {})
    if not any(isinstance(value, dict) for value in train.values()):
        upgraded["train"] = _nest(train)
    for name, kind in NETWORKS.items():
        if name in upgraded:
            upgraded[name] = dataclasses.asdict(config_from_dict(kind, upgraded[name]))
    return json.loads(json.dumps(upgraded))


def train_config(train: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a (nested) "train" object, each field typed and named when wrong."""
    known = {"preset", *SECTIONS, *NETWORKS}
    unknown = sorted(set(train) - known)
    if unknown:
        raise ValueError(f"unknown training config keys {unknown}; valid: {', '.join(known)}")
    values: dict[str, Any] = {name: train[name] for name in ("preset", *NETWORKS) if name in train}
    for name, kind in SECTIONS.items():
        section = train.get(name, {})
        names = [f.name for f in dataclasses.fields(kind)]
        bad = sorted(set(section) - set(names))
        if bad:
            raise ValueError(f"{name} has no field {bad[0]}; valid: {', '.join(names)}")
        values[name] = config_from_dict(kind, section)
    return TrainConfig(**values)


def _field_types(section: str) -> dict[str, str]:
    """The fields of a section or network config -> their type's text ('int', 'tuple[...]')."""
    kind = SECTIONS.get(section) or NETWORKS[section]
    return {f.name: str(f.type) for f in dataclasses.fields(kind)}


def _parse_value(kind: str, text: str) -> Any:
    if kind.startswith("tuple"):
        item = "int" if "int" in kind else "str"
        return tuple(_parse_value(item, x) for x in text.split(",") if x)
    if kind == "bool":
        if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(f"expected true/false, got {text!r}")
        return text.lower() in ("1", "true", "yes", "on")
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return text


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """--set KEY=VALUE items -> {"section.field": value}, typed as the fields are; KEY is
    `preset` or SECTION.FIELD, SECTION a TrainConfig section or a network config."""
    values: dict[str, Any] = {}
    sections = [*SECTIONS, *NETWORKS]
    for item in items:
        key, sep, text = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or (key != "preset" and not (dot and section in sections)):
            moved = _flat_names().get(key)
            if moved and sep:
                raise ValueError(f"--set {item!r}: {key} is now {moved} (--set {moved}={text})")
            raise ValueError(
                f"--set {item!r}: expected KEY=VALUE with KEY preset or SECTION.FIELD, "
                f"SECTION one of {', '.join(sections)}"
            )
        if key == "preset":
            values[key] = text
            continue
        types = _field_types(section)
        if name not in types:
            raise ValueError(
                f"--set {item!r}: {section} has no field {name}; valid: {', '.join(types)}"
            )
        try:
            values[key] = _parse_value(types[name], text)
        except ValueError as error:
            raise ValueError(
                f"--set {item!r}: {section}.{name} is {types[name]}: {error}"
            ) from None
    return values


def apply_overrides(train: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A "train" object with {"section.field": value} changes applied (a new dict)."""
    changed = copy.deepcopy(train)
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if not name:
            changed[key] = value
        else:
            changed.setdefault(section, {})[name] = value
    return changed


def override(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """`config` with {"section.field": value} changes (tests, benchmarks, scripts)."""
    return train_config(apply_overrides(dataclasses.asdict(config), overrides))


def dotted(train: dict[str, Any]) -> dict[str, Any]:
    """A nested "train" object as {"section.field": value} ("preset" stays as it is)."""
    flat: dict[str, Any] = {}
    for key, value in train.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{name}": item for name, item in value.items()})
        else:
            flat[key] = value
    return flat
