"""Artifacts on the Hugging Face Hub, through `huggingface_hub` (no hand-written download code).

`resolve_model_dir` turns a local artifact directory or a Hub repo id into a directory
(`snapshot_download`: cached under HF_HUB_CACHE, and read from that cache alone when
HF_HUB_OFFLINE=1); `push_to_hub` uploads an exported directory with its model card;
`write_model_card` writes that card (README.md) with the Hub's metadata front matter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.artifacts import CONFIG_NAME, ArtifactError

MODEL_CARD_NAME = "README.md"  # the file the Hub renders and reads metadata from
LIBRARY_NAME = "xmc"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_repo_id(text: str) -> bool:
    """ "org/name" with the Hub's characters (and not a path that exists locally)."""
    return bool(_REPO_ID.match(text)) and ".." not in text and not Path(text).exists()


def resolve_model_dir(
    path_or_repo_id: str | Path, revision: str | None = None, cache_dir: str | Path | None = None
) -> Path:
    """A local directory as it is; a Hub repo id -> its snapshot directory.

    `revision` is a branch, tag or commit of the repo (default "main"). Raises
    ArtifactError, in one line, for a path that is no directory or a repo that cannot be
    had (not cached while offline, unknown repo or revision, network failure).
    """
    text = str(path_or_repo_id)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if not is_repo_id(text):
        raise ArtifactError(f"{text} is neither an artifact directory nor a Hub repo id (org/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(text, revision=revision, cache_dir=cache_dir))
    except LocalEntryNotFoundError:
        raise ArtifactError(
            f"{text}@{revision or 'main'} is not in the Hugging Face cache and the Hub cannot "
            "be reached (HF_HUB_OFFLINE is set or there is no network)"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArtifactError(f"cannot download {text}@{revision or 'main'}: {first}") from None


# an example caption the card's model can draw: COCO's kind of scene, or the shapes benchmark's
EXAMPLE_CAPTIONS = {"coco": "a red bus parked by the side of the road"}
SHAPES_CAPTION = "a red circle above a blue square"


def model_card_text(
    model_id: str,
    *,
    load_from: str | None = None,
    caption: str | None = None,
    license: str = "apache-2.0",
    datasets: Sequence[str] = (),
    tags: Sequence[str] = (),
    description: str = "",
    metrics: dict[str, Any] | None = None,
) -> str:
    """README.md text: YAML front matter the Hub reads, then a short human description and a
    snippet that loads the model. `load_from` is what the snippet passes to
    `XMCGANPipeline.from_pretrained` (default `model_id`, right for a Hub repo id; "" loads the
    bundled model); `caption` defaults to one the model can draw, chosen by its preset tag."""
    from huggingface_hub import ModelCardData

    source = model_id if load_from is None else load_from
    load = (
        f"XMCGANPipeline.from_pretrained({json.dumps(source)})"
        if source
        else "XMCGANPipeline.from_pretrained()  # the bundled model"
    )
    kind = next((k for k in EXAMPLE_CAPTIONS for t in tags if t.startswith(k)), None)
    caption = caption or EXAMPLE_CAPTIONS.get(kind or "", SHAPES_CAPTION)

    data = ModelCardData(
        library_name=LIBRARY_NAME,
        pipeline_tag="text-to-image",
        license=license,
        datasets=list(datasets) or None,
        tags=sorted({"text-to-image", "gan", "xmc-gan", *tags}),
    )
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {model_id}",
        "",
        description
        or "An XMC-GAN text-to-image generator (Zhang et al., CVPR 2021) with its text "
        "encoder config: `config.json` + `model.safetensors`.",
        "",
        "```python",
        "from models import XMCGANPipeline",
        "",
        f"pipeline = {load}",
        f"images = pipeline({json.dumps(caption)}, seed=0)  # a list of PIL images",
        'images[0].save("image.png")',
        "```",
    ]
    if metrics:
        lines += ["", "| metric | value |", "| --- | --- |"]
        lines += [f"| {name} | {value} |" for name, value in metrics.items()]
    return "\n".join(lines) + "\n"


def write_model_card(directory: str | Path, model_id: str, **card: Any) -> Path:
    """Write `directory/README.md` (see `model_card_text` for the keyword arguments); its
    snippet loads the Hub repo when `model_id` is one, else `directory` as given."""
    card.setdefault("load_from", model_id if is_repo_id(model_id) else str(directory))
    path = Path(directory) / MODEL_CARD_NAME
    path.write_text(model_card_text(model_id, **card), encoding="utf-8")
    return path


def push_to_hub(
    directory: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload XMC-GAN artifact",
    token: str | None = None,
    api: Any = None,
    **card: Any,
) -> str:
    """Create `repo_id` if needed and upload the artifact directory; returns the commit URL.

    A directory without README.md gets a model card first (`card` keywords as
    `model_card_text`). `api` is an `HfApi` (one is made with `token` if not given).
    """
    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file():
        raise ArtifactError(f"{directory} holds no {CONFIG_NAME}: export the model first")
    if not is_repo_id(repo_id):
        raise ArtifactError(f"{repo_id!r} is not a Hub repo id (org/name)")
    if not (directory / MODEL_CARD_NAME).is_file():
        write_model_card(directory, repo_id, **card)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(directory),
        repo_type="model",
        revision=revision,
        commit_message=commit_message,
    )
    return str(getattr(info, "commit_url", info))
