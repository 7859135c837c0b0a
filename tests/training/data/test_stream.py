"""What `DataStream` asks of a dataset it is handed, said in one line instead of a TypeError or
an AttributeError from deep inside the loader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from torch.utils.data import Dataset, IterableDataset

from training.data.base import CaptionedImage, DatasetError
from training.data.stream import DataStream
from training.distributed import DistInfo
from training.faults import RunError


class _Endless(IterableDataset):
    def __iter__(self) -> Iterator[dict]:
        while True:
            yield {"image": 0, "caption": "a red circle"}


class _Unsized(Dataset):
    def __getitem__(self, index: int) -> dict:
        return {"image": 0, "caption": "a red circle"}


@pytest.mark.parametrize(
    ("dataset", "needs"), [(_Endless(), "needs resume_at()"), (_Unsized(), "needs a len()")]
)
def test_a_handed_dataset_missing_what_the_stream_needs_is_named(dataset, needs: str) -> None:
    # before: AttributeError ('_Endless' object has no attribute 'resume_at') / TypeError
    stream = DataStream(dataset, 4, 0, DistInfo())
    with pytest.raises(RunError, match=f"{type(dataset).__name__}: .*{needs}"):
        next(stream.batches())


def test_a_record_without_scene_attributes_is_named_when_a_scene_is_asked_for() -> None:
    # before: TypeError ('NoneType' object is not subscriptable) in the shapes evaluation
    record = CaptionedImage(1, Path("coco/train2014/cat.jpg"), ("a cat",))
    with pytest.raises(DatasetError, match="cat.jpg: no scene attributes"):
        record.scene()
    attributes = {"objects": [], "relation": None}
    assert CaptionedImage(2, Path("x.png"), ("a",), attributes).scene() is attributes
