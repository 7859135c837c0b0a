"""models.hub offline: a hand-built Hub cache, a fake upload API, the model card's metadata."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from models.artifacts import ArtifactError
from models.hub import is_repo_id, model_card_text, push_to_hub, resolve_model_dir

SHA = "0123456789abcdef0123456789abcdef01234567"


def _fake_cache(cache: Path, artifact: Path, repo_id: str = "org/xmc-tiny") -> Path:
    """The layout huggingface_hub keeps: models--org--name/{refs/main, snapshots/SHA/...}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / SHA
    shutil.copytree(artifact, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SHA)
    return snapshot


def test_a_local_directory_is_returned_as_it_is(tmp_path: Path) -> None:
    assert resolve_model_dir(tmp_path) == tmp_path
    with pytest.raises(ArtifactError, match="neither an artifact directory"):
        resolve_model_dir(tmp_path / "missing" / "deep" / "dir")


def test_a_repo_id_resolves_from_the_cache_offline(
    tiny_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    snapshot = _fake_cache(tmp_path / "hub", tiny_artifact)
    assert resolve_model_dir("org/xmc-tiny", cache_dir=tmp_path / "hub") == snapshot
    assert resolve_model_dir("org/xmc-tiny", revision=SHA, cache_dir=tmp_path / "hub") == snapshot
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # HF_HUB_CACHE=...
    resolved = resolve_model_dir("org/xmc-tiny")
    assert resolved == snapshot and (resolved / "model.safetensors").is_file()


def test_the_pipeline_loads_a_repo_id_from_the_cache(
    tiny_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from models import XMCGANPipeline

    _fake_cache(tmp_path / "hub", tiny_artifact)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    pipe = XMCGANPipeline.from_pretrained("org/xmc-tiny", device="cpu")
    assert pipe.model_id == "xmc-tiny" and pipe(["a red circle"], seed=0)[0].size == (32, 32)


def test_an_uncached_repo_is_a_one_line_error_offline(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not in the Hugging Face cache") as caught:
        resolve_model_dir("org/not-cached", cache_dir=tmp_path)
    assert "\n" not in str(caught.value)
    assert is_repo_id("org/name") and not is_repo_id("../name") and not is_repo_id("plain")


def test_model_card_carries_the_hub_metadata(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    path = tmp_path / "README.md"
    text = model_card_text("org/xmc", datasets=["coco"], tags=["coco-256"], metrics={"FID": 9.3})
    path.write_text(text)
    data = ModelCard.load(path).data
    assert data.library_name == "xmc" and data.pipeline_tag == "text-to-image"
    assert data.license == "apache-2.0" and data.datasets == ["coco"]
    assert {"text-to-image", "gan", "coco-256"} <= set(data.tags)
    assert "| FID | 9.3 |" in text


class FakeApi:
    """Records what would have been sent to the Hub."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id: str, **options: object) -> None:
        self.calls.append(("create_repo", {"repo_id": repo_id, **options}))

    def upload_folder(self, **options: object) -> object:
        files = sorted(p.name for p in Path(str(options["folder_path"])).iterdir())
        self.calls.append(("upload_folder", {**options, "files": files}))
        return type("CommitInfo", (), {"commit_url": "https://hub.example/commit/1"})()


def test_push_uploads_the_artifact_with_a_model_card(tiny_artifact: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    shutil.copytree(tiny_artifact, export)
    api = FakeApi()
    url = push_to_hub(export, "org/xmc-tiny", api=api, private=True, datasets=["shapes"])
    assert url == "https://hub.example/commit/1"
    (create, repo), (upload, sent) = api.calls
    assert (create, repo["repo_id"], repo["private"], repo["exist_ok"]) == (
        "create_repo",
        "org/xmc-tiny",
        True,
        True,
    )
    assert upload == "upload_folder" and sent["repo_id"] == "org/xmc-tiny"
    assert {"README.md", "config.json", "model.safetensors"} <= set(sent["files"])
    assert "pipeline_tag: text-to-image" in (export / "README.md").read_text()
    with pytest.raises(ArtifactError, match="no config.json"):
        push_to_hub(tmp_path, "org/x", api=api)
