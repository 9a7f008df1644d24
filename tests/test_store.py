"""The HDF5 feature store: exact round trips, validation messages that name video and stream, atomic writes."""

import h5py
import numpy as np
import pytest

from avvp.errors import AvvpError, StoreError
from avvp.store import RAW_WIDTHS, StoreWriter, iter_store, read_store, read_video_ids, store_info, write_store

WIDTHS = {"audio": 128, "visual": 2048, "motion": 512}


def make_streams(n: int, seed: int = 0, dtype=np.float32) -> tuple[list[str], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    video_ids = [f"vid{i:08d}_{i}_{i + 10}" for i in range(n)]
    streams = {name: rng.standard_normal((n, 10, width)).astype(dtype) for name, width in WIDTHS.items()}
    return video_ids, streams


def assert_message(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip_is_exact(tmp_path, dtype):
    video_ids, streams = make_streams(37, dtype=np.dtype(dtype))
    path = write_store(tmp_path / "store.h5", video_ids, streams, dtype=dtype, source="test", attrs={"note": "x"})
    store = read_store(path, dtype=dtype, widths=RAW_WIDTHS)
    assert store.video_ids == video_ids
    assert store.widths == WIDTHS
    for name, array in streams.items():
        assert store[name].dtype == np.dtype(dtype) and store[name].flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(store[name], array)
    assert store.attrs["schema"] == 1 and store.attrs["source"] == "test" and store.attrs["note"] == "x"
    assert store.attrs["created_by"].startswith("avvp ")
    # float16 values read as float32 are the same numbers.
    np.testing.assert_array_equal(read_store(path, streams=("audio",))["audio"], streams["audio"].astype(np.float32))
    # dtype None: each stream as stored
    assert read_store(path, streams=("audio",), dtype=None)["audio"].dtype == np.dtype(dtype)
    info = store_info(path)
    assert info["videos"] == 37 and info["streams"]["visual"] == {"shape": [37, 10, 2048], "dtype": dtype}
    assert read_video_ids(path) == video_ids


def test_read_subset_in_given_order(tmp_path):
    video_ids, streams = make_streams(50)
    path = write_store(tmp_path / "store.h5", video_ids, streams, dtype="float32")
    order = [7, 3, 49, 0, 4, 20]
    wanted = [video_ids[i] for i in order]
    store = read_store(path, streams=("visual", "audio"), video_ids=wanted)
    assert store.video_ids == wanted and set(store.streams) == {"visual", "audio"}
    np.testing.assert_array_equal(store["visual"], streams["visual"][order])
    np.testing.assert_array_equal(store["audio"], streams["audio"][order])
    sparse = [video_ids[i] for i in (45, 2)]  # far apart: read row by row
    np.testing.assert_array_equal(read_store(path, ("motion",), video_ids=sparse)["motion"], streams["motion"][[45, 2]])


def test_iter_store_chunks(tmp_path):
    video_ids, streams = make_streams(23)
    path = write_store(tmp_path / "store.h5", video_ids, streams, dtype="float32")
    chunks = list(iter_store(path, streams=("audio", "motion"), chunk_size=10))
    assert [len(ids) for ids, _ in chunks] == [10, 10, 3]
    assert sum((ids for ids, _ in chunks), []) == video_ids
    for name in ("audio", "motion"):
        np.testing.assert_array_equal(np.concatenate([arrays[name] for _, arrays in chunks]), streams[name])


def test_streaming_writer_appends_chunks(tmp_path):
    video_ids, streams = make_streams(30)
    with StoreWriter(tmp_path / "store.h5", WIDTHS, dtype="float32") as writer:
        for start in range(0, 30, 7):
            writer.append(video_ids[start : start + 7], **{k: v[start : start + 7] for k, v in streams.items()})
    store = read_store(tmp_path / "store.h5")
    assert store.video_ids == video_ids
    np.testing.assert_array_equal(store["motion"], streams["motion"])


def test_nan_names_video_and_stream(tmp_path):
    video_ids, streams = make_streams(12)
    streams["visual"][5, 3, 100] = np.nan
    streams["visual"][9, 0, 0] = np.inf
    path = write_store(tmp_path / "store.h5", video_ids, streams, dtype="float32")
    with pytest.raises(StoreError) as error:
        read_store(path)
    assert_message(error, str(path), "'visual'", repr(video_ids[5]), "NaN", "2 videos")
    with pytest.raises(StoreError) as error:
        list(iter_store(path, streams=("visual",), chunk_size=4))
    assert_message(error, "'visual'", repr(video_ids[5]))
    # Reading only the clean stream, or the clean videos, works.
    read_store(path, streams=("audio", "motion"))
    read_store(path, streams=("visual",), video_ids=video_ids[:5])


def test_wrong_width_names_stream(tmp_path):
    video_ids, streams = make_streams(4)
    streams["audio"] = streams["audio"][:, :, :64]
    path = write_store(tmp_path / "store.h5", video_ids, streams, dtype="float32")
    with pytest.raises(StoreError) as error:
        read_store(path, widths=RAW_WIDTHS)
    assert_message(error, str(path), "'audio'", "width 64", "expected 128")
    assert read_store(path)["audio"].shape == (4, 10, 64)  # any width is fine when none is pinned


def test_missing_stream_names_stream(tmp_path):
    video_ids, streams = make_streams(4)
    del streams["motion"]
    path = write_store(tmp_path / "store.h5", video_ids, streams, dtype="float32")
    with pytest.raises(StoreError) as error:
        read_store(path)
    assert_message(error, str(path), "no stream 'motion'", "audio, visual")


def test_missing_video_names_video(tmp_path):
    video_ids, streams = make_streams(4)
    path = write_store(tmp_path / "store.h5", video_ids, streams, dtype="float32")
    with pytest.raises(StoreError) as error:
        read_store(path, video_ids=[video_ids[1], "notthere0000_0_10"])
    assert_message(error, str(path), "1 video(s) not in the store", "'notthere0000_0_10'")


def test_wrong_shape_and_duplicate_ids_are_named(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as handle:
        handle["video_ids"] = np.array(["a_0_10", "b_0_10", "a_0_10"], dtype=h5py.string_dtype())
        handle["audio"] = np.zeros((3, 10, 128), np.float32)
    with pytest.raises(StoreError) as error:
        read_store(path, streams=("audio",))
    assert_message(error, "'a_0_10' appears more than once")
    with h5py.File(path, "w") as handle:
        handle["video_ids"] = np.array(["a_0_10", "b_0_10"], dtype=h5py.string_dtype())
        handle["audio"] = np.zeros((2, 9, 128), np.float32)
    with pytest.raises(StoreError) as error:
        read_store(path, streams=("audio",))
    assert_message(error, "'audio'", "(2, 9, 128)")


def test_existing_output_is_refused_without_overwrite(tmp_path):
    video_ids, streams = make_streams(3)
    path = write_store(tmp_path / "store.h5", video_ids, streams)
    before = path.read_bytes()
    with pytest.raises(AvvpError, match="already exists; pass --overwrite"):
        write_store(path, video_ids[:2], {k: v[:2] for k, v in streams.items()})
    assert path.read_bytes() == before
    write_store(path, video_ids[:2], {k: v[:2] for k, v in streams.items()}, overwrite=True)
    assert read_video_ids(path) == video_ids[:2]


def test_failure_midway_leaves_nothing(tmp_path):
    video_ids, streams = make_streams(20)
    target = tmp_path / "out" / "store.h5"
    with pytest.raises(RuntimeError, match="disk on fire"):
        with StoreWriter(target, WIDTHS) as writer:
            writer.append(video_ids[:10], **{k: v[:10] for k, v in streams.items()})
            raise RuntimeError("disk on fire")
    assert not target.exists()
    assert not target.parent.exists()  # made for the output (by its lock), removed with it
    # A bad chunk (wrong width) aborts the same way, and an existing file survives a failed overwrite.
    write_store(target, video_ids, streams)
    before = target.read_bytes()
    with pytest.raises(StoreError, match="'audio' chunk has shape"):
        with StoreWriter(target, WIDTHS, overwrite=True) as writer:
            writer.append(video_ids[:10], **{k: v[:10] for k, v in streams.items()})
            writer.append(video_ids[10:], **{k: v[10:, :, :5] for k, v in streams.items()})
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["store.h5"]


def test_same_input_gives_identical_files(tmp_path):
    video_ids, streams = make_streams(40)
    first = write_store(tmp_path / "a.h5", video_ids, streams, source="s", attrs={"seed": 3})
    second = write_store(tmp_path / "b.h5", video_ids, streams, source="s", attrs={"seed": 3})
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize("dtype", ["bogus", "float64", "int8"])
def test_unsupported_dtype_names_the_file_and_writes_nothing(tmp_path, dtype):
    video_ids, streams = make_streams(2)
    with pytest.raises(StoreError) as error:
        write_store(tmp_path / "store.h5", video_ids, streams, dtype=dtype)
    assert_message(error, "store.h5", f"dtype {dtype} not supported; expected float16 or float32")
    assert list(tmp_path.iterdir()) == []


def test_a_directory_is_named_as_such(tmp_path):
    with pytest.raises(StoreError) as error:
        read_store(tmp_path)
    assert_message(error, str(tmp_path), "is a directory; expected a feature store file")


def test_numeric_video_ids_are_refused(tmp_path):
    path = tmp_path / "store.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("video_ids", data=np.arange(2))
        handle.create_dataset("audio", data=np.zeros((2, 10, 128), np.float32))
    with pytest.raises(StoreError) as error:
        read_store(path, streams=("audio",))
    assert_message(error, "store.h5", "'video_ids' holds int64 values; expected strings")
