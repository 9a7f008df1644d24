"""The AVG label file: component ids are checked on writing and on reading."""

import h5py
import numpy as np
import pytest

from avvp.avg_labels import read_avg_labels, write_avg_labels
from avvp.errors import StoreError

IDS = ["aaaaaaaaaaa_0_10", "bbbbbbbbbbb_0_10"]


def _raw_label_file(path, components) -> None:
    """A label file written around the writer's checks, as another tool might."""
    with h5py.File(path, "w") as handle:
        handle.create_dataset("video_ids", data=np.asarray(IDS, dtype=object), dtype=h5py.string_dtype("utf-8"))
        handle.create_dataset("components", data=components)


@pytest.mark.parametrize(
    ("components", "message"),
    [
        (np.full((2, 10), -1, np.int8), "video 'aaaaaaaaaaa_0_10' has component ids [-1, -1"),
        (np.stack([np.zeros(10, np.int32), np.full(10, 300, np.int32)]), "video 'bbbbbbbbbbb_0_10' has component ids"),
        (np.zeros((2, 10), np.float32), "component ids of dtype float32; expected integers"),
    ],
)
def test_bad_component_ids_are_refused_on_reading(tmp_path, components, message):
    _raw_label_file(tmp_path / "labels.h5", components)
    with pytest.raises(StoreError, match="labels.h5: ") as error:
        read_avg_labels(tmp_path / "labels.h5")
    assert message in str(error.value)


def test_bad_component_ids_are_refused_on_writing(tmp_path):
    components = np.zeros((2, 10), np.int64)
    components[1, 3] = 10
    with pytest.raises(StoreError, match="'bbbbbbbbbbb_0_10' has component ids .*expected ids in 0..9"):
        write_avg_labels(tmp_path / "labels.h5", IDS, components)
    assert not (tmp_path / "labels.h5").exists()
    components[1, 3] = 9
    labels = read_avg_labels(write_avg_labels(tmp_path / "labels.h5", IDS, components))
    assert labels.video_ids == IDS and np.array_equal(labels.components, components)
