"""`avvp data import-han`: the LLP feature release layout into a store, through the library and the CLI."""

import shutil

import numpy as np
import pytest

from avvp.errors import StoreError
from avvp.import_features import import_han, read_video_list
from avvp.store import RAW_WIDTHS, read_store, store_info

IDS = ["aaaaaaaaaaa_0_10", "bbbbbbbbbbb_5_15", "ccccccccccc_30_40"]


def visual_frames(count: int, offset: float = 0.0) -> np.ndarray:
    """Frame f holds f + offset + (column % 4): exact averages in float16 and float32."""
    return (np.arange(count)[:, None] + offset + np.arange(RAW_WIDTHS["visual"]) % 4).astype(np.float32)


def write_clip(root, video_id, frames: int = 80, audio_width: int = 128, seed: int = 0, skip: str = ""):
    rng = np.random.default_rng(seed)
    arrays = {
        "vggish": rng.integers(0, 256, (10, audio_width)).astype(np.float32),
        "res152": visual_frames(frames, offset=seed),
        "r2plus1d_18": rng.random((10, 512), dtype=np.float32),
    }
    for folder, array in arrays.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        if folder != skip:
            np.save(root / folder / f"{video_id}.npy", array)
    return arrays


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "llp_features"
    clips = {video_id: write_clip(root, video_id, seed=i) for i, video_id in enumerate(IDS)}
    return root, clips


def test_80_frame_clips_are_averaged_per_second(release, tmp_path):
    root, clips = release
    result = import_han(root, tmp_path / "store.h5", dtype="float32")
    assert result.video_ids == sorted(IDS) and result.skipped == [] and result.padded == 0
    store = read_store(result.path, widths=RAW_WIDTHS)
    assert store.video_ids == sorted(IDS)
    for i, video_id in enumerate(store.video_ids):
        np.testing.assert_array_equal(store["audio"][i], clips[video_id]["vggish"])
        np.testing.assert_array_equal(store["motion"][i], clips[video_id]["r2plus1d_18"])
        frames = clips[video_id]["res152"]
        np.testing.assert_array_equal(store["visual"][i], frames.reshape(10, 8, -1).mean(axis=1))
    # Second s averages frames 8s..8s+7: 8s + 3.5 + seed + column % 4.
    assert store["visual"][0, 3, :4].tolist() == [27.5, 28.5, 29.5, 30.5]
    assert store_info(result.path)["attrs"]["skipped_video_ids"] == []


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_75_frame_clip_is_padded_with_its_last_frame(release, tmp_path, dtype):
    root, _ = release
    write_clip(root, IDS[1], frames=75, seed=0)
    result = import_han(root, tmp_path / "store.h5", dtype=dtype, video_ids=[IDS[1]])
    assert result.padded == 1 and result.padded_videos == [IDS[1]]
    visual = read_store(result.path, streams=("visual",))["visual"][0]
    # Seconds 0..8 are untouched; second 9 holds frames 72, 73, 74 and five copies of frame 74.
    assert visual[8, :4].tolist() == [67.5, 68.5, 69.5, 70.5]
    last = (72 + 73 + 6 * 74) / 8
    assert last == 73.625
    assert visual[9, :4].tolist() == [last, last + 1, last + 2, last + 3]


def test_72_frames_is_the_shortest_clip(release, tmp_path):
    root, _ = release
    write_clip(root, IDS[0], frames=72)
    visual = read_store(import_han(root, tmp_path / "store.h5", video_ids=[IDS[0]]).path, ("visual",))["visual"]
    assert visual[0, 9, 0] == 71.0  # 8 copies of frame 71


@pytest.mark.parametrize("frames", [60, 71, 81])
def test_too_few_or_too_many_frames_is_an_error_naming_the_file(release, tmp_path, frames):
    root, _ = release
    write_clip(root, IDS[2], frames=frames)
    with pytest.raises(StoreError) as error:
        import_han(root, tmp_path / "store.h5")
    message = str(error.value)
    assert message.startswith(f"{root / 'res152' / IDS[2]}.npy: shape ({frames}, 2048)"), message
    assert "expected (72..80, 2048)" in message
    assert list(tmp_path.glob("store.h5*")) == [] and list(tmp_path.glob(".store.h5*")) == []


def test_wrong_width_is_an_error_naming_the_file(release, tmp_path):
    root, _ = release
    write_clip(root, IDS[0], audio_width=64)
    with pytest.raises(StoreError, match=r"vggish/aaaaaaaaaaa_0_10\.npy: shape \(10, 64\); expected \(10, 128\)"):
        import_han(root, tmp_path / "store.h5", workers=3)
    assert not (tmp_path / "store.h5").exists()


def test_values_beyond_float16_are_an_error_naming_the_file(release, tmp_path):
    root, _ = release
    np.save(root / "r2plus1d_18" / f"{IDS[1]}.npy", np.full((10, 512), 1e6, dtype=np.float32))
    with pytest.raises(StoreError, match=r"r2plus1d_18/bbbbbbbbbbb_5_15\.npy: values overflow float16; use --dtype"):
        import_han(root, tmp_path / "store.h5")
    assert read_store(import_han(root, tmp_path / "store.h5", dtype="float32").path)["motion"].max() == 1e6


def test_missing_file_is_an_error_or_skipped(release, tmp_path):
    root, _ = release
    (root / "r2plus1d_18" / f"{IDS[1]}.npy").unlink()
    with pytest.raises(StoreError) as error:
        import_han(root, tmp_path / "store.h5")
    assert str(error.value).startswith(f"{root / 'r2plus1d_18' / IDS[1]}.npy: no such file")
    assert "--skip-missing" in str(error.value)
    result = import_han(root, tmp_path / "store.h5", skip_missing=True)
    assert result.video_ids == [IDS[0], IDS[2]] and result.skipped == [IDS[1]]
    assert read_store(result.path).video_ids == [IDS[0], IDS[2]]
    assert store_info(result.path)["attrs"]["skipped_video_ids"] == [IDS[1]]
    assert result.skipped_list.read_text() == f"{IDS[1]}\n"


def test_cli_imports_and_reports_skipped(release, tmp_path, run_avvp):
    root, clips = release
    write_clip(root, "ddddddddddd_0_10", skip="res152")  # listed in vggish/ but not in res152/
    out = tmp_path / "store.h5"
    code, stdout, stderr = run_avvp("data", "import-han", root, "--out", out, "--dtype", "float32")
    assert code == 1
    assert (
        stderr.strip().splitlines()[-1].startswith(f"error: {root / 'res152' / 'ddddddddddd_0_10'}.npy: no such file")
    )
    assert not out.exists()

    code, stdout, stderr = run_avvp(
        "data", "import-han", root, "--out", out, "--dtype", "float32", "--skip-missing", "--workers", "2"
    )
    assert code == 0, stderr
    assert f"wrote {out}: 3 videos (float32)" in stdout
    assert "skipped 1 video(s)" in stdout and "ddddddddddd_0_10" in stdout
    assert (tmp_path / "store.h5.skipped.txt").read_text() == "ddddddddddd_0_10\n"
    np.testing.assert_array_equal(read_store(out, ("audio",))["audio"][1], clips[IDS[1]]["vggish"])

    code, _, stderr = run_avvp("data", "import-han", root, "--out", out, "--skip-missing")
    assert code == 1 and "already exists; pass --overwrite" in stderr

    video_list = tmp_path / "ids.txt"
    video_list.write_text(f"filename\tevent_labels\n{IDS[2]}\tSpeech\n\n{IDS[0]}\tDog\n")
    code, stdout, stderr = run_avvp("data", "import-han", root, "--out", out, "--video-ids", video_list, "--overwrite")
    assert code == 0, stderr
    assert read_store(out).video_ids == [IDS[2], IDS[0]]
    assert not (tmp_path / "store.h5.skipped.txt").exists()  # the stale list of the replaced store is gone


def test_cli_rejects_bad_options(release, tmp_path, run_avvp):
    root, _ = release
    for dtype in ("int8", "float64", "bogus"):
        code, stdout, stderr = run_avvp("data", "import-han", root, "--out", tmp_path / "s.h5", "--dtype", dtype)
        assert code == 1 and stdout == ""
        assert stderr == f"error: --dtype {dtype}: not supported; expected float16 or float32\n"
    code, _, stderr = run_avvp("data", "import-han", tmp_path / "nowhere", "--out", tmp_path / "s.h5")
    assert code == 1 and "no vggish/, res152/, r2plus1d_18/ folder" in stderr
    assert list(tmp_path.glob("*.h5")) == []


def test_video_list_errors(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text(f"{IDS[0]}\n{IDS[1]}\n{IDS[0]}\n")
    with pytest.raises(Exception, match=r"ids.txt:3: video 'aaaaaaaaaaa_0_10' is listed again \(first at line 1\)"):
        read_video_list(path)
    path.write_text("\n")
    with pytest.raises(Exception, match="lists no video"):
        read_video_list(path)


def test_same_release_gives_identical_stores(release, tmp_path):
    root, _ = release
    first = import_han(root, tmp_path / "a.h5", workers=1).path
    second = import_han(root, tmp_path / "b.h5", workers=4).path
    assert first.read_bytes() == second.read_bytes()


def test_an_existing_skipped_list_is_an_output(release, tmp_path, run_avvp):
    root, _ = release
    out, skipped_list = tmp_path / "store.h5", tmp_path / "store.h5.skipped.txt"
    skipped_list.write_text("kept\n")
    code, stdout, stderr = run_avvp("data", "import-han", root, "--out", out)
    assert code == 1 and stderr == f"error: {skipped_list}: already exists; pass --overwrite to replace it\n"
    assert skipped_list.read_text() == "kept\n" and not out.exists()
    (root / "r2plus1d_18" / f"{IDS[1]}.npy").unlink()
    code, stdout, stderr = run_avvp("data", "import-han", root, "--out", out, "--skip-missing")
    assert code == 1 and "already exists; pass --overwrite" in stderr
    assert skipped_list.read_text() == "kept\n" and not out.exists()
    code, stdout, stderr = run_avvp("data", "import-han", root, "--out", out, "--skip-missing", "--overwrite")
    assert code == 0, stderr
    assert skipped_list.read_text() == f"{IDS[1]}\n"


def test_an_npz_archive_named_npy_is_an_error_naming_the_file(release, tmp_path, run_avvp):
    root, clips = release
    path = root / "vggish" / f"{IDS[0]}.npy"
    with open(path, "wb") as handle:
        np.savez(handle, features=clips[IDS[0]]["vggish"])
    code, stdout, stderr = run_avvp("data", "import-han", root, "--out", tmp_path / "store.h5")
    assert code == 1 and stderr.splitlines()[-1].startswith(f"error: {path}: not a .npy array"), stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "store.h5").exists()


def test_a_video_list_that_is_not_utf8_is_an_error_naming_it(release, tmp_path, run_avvp):
    root, _ = release
    video_list = tmp_path / "ids.txt"
    video_list.write_bytes(f"{IDS[0]}\n".encode() + b"caf\xe9_0_10\n")
    code, stdout, stderr = run_avvp("data", "import-han", root, "--out", tmp_path / "s.h5", "--video-ids", video_list)
    assert code == 1 and stderr.startswith(f"error: {video_list}: not UTF-8 text") and stderr.count("\n") == 1, stderr
    assert "line 2" in stderr
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.parametrize("contents", [b"", b"\x93NUMPY\x01\x00v\x00{'descr'", b"not an array\n"])
def test_an_empty_or_cut_npy_file_is_an_error_naming_it(release, tmp_path, contents):
    root, _ = release
    path = root / "r2plus1d_18" / f"{IDS[2]}.npy"
    path.write_bytes(contents)
    with pytest.raises(StoreError, match=r"r2plus1d_18/ccccccccccc_30_40\.npy: not a readable \.npy array"):
        import_han(root, tmp_path / "store.h5", workers=2)
    assert not (tmp_path / "store.h5").exists()


# --- the LLP release names its files by YouTube id: the store names the videos by their LLP filenames ---

MADE_UP = [f"{letter * 10}{i % 10}_{10 * i}_{10 * i + 10}" for i, letter in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")]


def release_ids(source: str, real_llp_folder) -> list[str]:
    """A few dozen LLP filenames: made up, or the first ones of the real AVVP_dataset_full.csv."""
    if source == "made-up":
        return MADE_UP + [f"x{i:02d}yz-_Q12w_{i}_{i + 10}" for i in range(10)]
    from avvp.annotations import DATASET_FILE, read_weak_labels

    return read_weak_labels(real_llp_folder / DATASET_FILE).video_ids[:36]


def annotation_folder(path, video_ids, file_name="AVVP_dataset_full.csv"):
    """An annotation folder listing `video_ids` (each labelled Speech) in one file."""
    from avvp.annotations import WeakLabels, write_weak_labels

    path.mkdir(parents=True, exist_ok=True)
    labels = np.zeros((len(video_ids), 25), dtype=bool)
    labels[:, 0] = True
    write_weak_labels(path / file_name, WeakLabels(list(video_ids), labels))
    return path


def release_tree(root, video_ids, by_youtube_id=True):
    """The release layout with one clip per video, files named by YouTube id or by filename: {video: arrays}."""
    return {
        video_id: write_clip(root, video_id[:11] if by_youtube_id else video_id, seed=i)
        for i, video_id in enumerate(video_ids)
    }


@pytest.fixture(params=["made-up", "real"])
def llp_ids(request):
    if request.param == "made-up":
        return release_ids("made-up", None)
    return release_ids("real", request.getfixturevalue("real_llp"))


def test_youtube_id_files_import_under_the_annotation_filenames(llp_ids, tmp_path, run_avvp):
    clips = release_tree(tmp_path / "feats", llp_ids)
    assert all(len(path.stem) == 11 for path in (tmp_path / "feats" / "vggish").iterdir())
    annotations = annotation_folder(tmp_path / "ann", llp_ids)
    out = tmp_path / "llp.h5"
    code, stdout, stderr = run_avvp(
        "data", "import-han", tmp_path / "feats", "--out", out, "--annotations", annotations, "--dtype", "float32"
    )
    assert code == 0, stderr
    assert stdout.splitlines() == [f"wrote {out}: 36 videos (float32); 0 visual clip(s) padded; 36 found by YouTube id"]
    store = read_store(out, widths=RAW_WIDTHS)
    assert store.video_ids == llp_ids  # in the annotation file's order
    for i, video_id in enumerate(llp_ids):
        np.testing.assert_array_equal(store["audio"][i], clips[video_id]["vggish"])
        np.testing.assert_array_equal(store["visual"][i], clips[video_id]["res152"].reshape(10, 8, -1).mean(axis=1))
        np.testing.assert_array_equal(store["motion"][i], clips[video_id]["r2plus1d_18"])

    # The same clips named by their whole filenames give the same store.
    release_tree(tmp_path / "named", llp_ids, by_youtube_id=False)
    named = import_han(tmp_path / "named", tmp_path / "named.h5", dtype="float32", annotations=annotations)
    assert named.by_youtube_id == 0 and named.unmatched == [] and named.shared == {}
    again = read_store(named.path, widths=RAW_WIDTHS)
    assert again.video_ids == store.video_ids
    for name in RAW_WIDTHS:
        np.testing.assert_array_equal(again[name], store[name])


def test_the_real_dataset_list_names_the_files_of_the_release(real_llp, tmp_path):
    """AVVP_dataset_full.csv itself: the files present import under their filenames, the rest are skipped."""
    video_ids = release_ids("real", real_llp)[:5]
    release_tree(tmp_path / "feats", video_ids)
    result = import_han(tmp_path / "feats", tmp_path / "llp.h5", annotations=real_llp, skip_missing=True)
    assert result.video_ids == video_ids and result.by_youtube_id == 5
    assert len(result.skipped) == 11849 - 5 and result.skipped_list.read_text().count("\n") == 11844


def test_split_files_stand_in_for_the_dataset_list(tmp_path):
    """Without AVVP_dataset_full.csv the split files present are read (train, val, test order)."""
    release_tree(tmp_path / "feats", MADE_UP)
    annotations = annotation_folder(tmp_path / "ann", MADE_UP[10:20], "AVVP_test_pd.csv")
    annotation_folder(annotations, MADE_UP[:10], "AVVP_train.csv")
    result = import_han(tmp_path / "feats", tmp_path / "llp.h5", annotations=annotations)
    assert result.video_ids == MADE_UP[:20] and result.by_youtube_id == 20
    assert result.unmatched == sorted(v[:11] for v in MADE_UP[20:])


def test_a_split_file_as_video_list_finds_youtube_id_files(tmp_path, run_avvp):
    """`--video-ids AVVP_train.csv` on the release as downloaded (it looked for vggish/ID_start_end.npy)."""
    release_tree(tmp_path / "feats", MADE_UP)
    split = annotation_folder(tmp_path / "ann", MADE_UP[3:9], "AVVP_train.csv") / "AVVP_train.csv"
    out = tmp_path / "train.h5"
    code, stdout, stderr = run_avvp("data", "import-han", tmp_path / "feats", "--out", out, "--video-ids", split)
    assert code == 0, stderr
    assert read_store(out).video_ids == MADE_UP[3:9]
    assert "not imported" not in stdout  # a list is a chosen subset: the other files are not reported


def test_shared_youtube_id_and_unmatched_files_are_reported(tmp_path, run_avvp):
    video_ids = MADE_UP[:6]
    release_tree(tmp_path / "feats", video_ids)
    write_clip(tmp_path / "feats", "zzzzzzzzzzz")  # a file of no annotated video
    write_clip(tmp_path / "feats", "yyyyyyyyyyy")
    twin = f"{video_ids[2][:11]}_300_310"  # a second clip of the third video's YouTube id: one file, two videos
    annotations = annotation_folder(tmp_path / "ann", [*video_ids, twin])
    out = tmp_path / "llp.h5"
    code, stdout, stderr = run_avvp(
        "data", "import-han", tmp_path / "feats", "--out", out, "--annotations", annotations
    )
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == f"wrote {out}: 5 videos (float16); 0 visual clip(s) padded; 5 found by YouTube id"
    assert lines[1] == (
        "left out 2 video(s) sharing a YouTube id with another, whose one file cannot say which clip it holds: "
        f"{video_ids[2][:11]}.npy ({video_ids[2]}, {twin})"
    )
    assert lines[2] == (
        f"not imported: 2 file(s) of {tmp_path / 'feats' / 'vggish'}/ match no annotated video: "
        "yyyyyyyyyyy.npy, zzzzzzzzzzz.npy"
    )
    assert len(lines) == 3
    assert read_store(out).video_ids == [v for v in video_ids if v != video_ids[2]]  # neither doubled nor guessed
    assert store_info(out)["attrs"]["shared_file_video_ids"] == sorted([video_ids[2], twin])


def test_many_unmatched_files_are_a_count_and_the_first_few(tmp_path, run_avvp):
    release_tree(tmp_path / "feats", MADE_UP)
    annotations = annotation_folder(tmp_path / "ann", MADE_UP[:2])
    code, stdout, _ = run_avvp(
        "data", "import-han", tmp_path / "feats", "--out", tmp_path / "s.h5", "--annotations", annotations
    )
    assert code == 0
    first_five = ", ".join(f"{video_id[:11]}.npy" for video_id in MADE_UP[2:7])
    assert stdout.splitlines()[1].endswith(f"/ match no annotated video: {first_five}, ..."), stdout
    assert " 24 file(s) " in stdout


def test_without_annotations_the_ids_are_the_file_stems(tmp_path):
    """A pretraining corpus (or the release imported as is): every file, named by its stem."""
    release_tree(tmp_path / "feats", MADE_UP[:4])
    result = import_han(tmp_path / "feats", tmp_path / "corpus.h5")
    assert result.video_ids == sorted(v[:11] for v in MADE_UP[:4]) and result.by_youtube_id == 0
    assert read_store(result.path).video_ids == result.video_ids


def one_line_error(result):
    code, stdout, stderr = result
    assert code == 1 and stdout == "" and stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    assert "Traceback" not in stderr
    return stderr.strip()


def test_bad_release_and_annotation_folders_are_one_line_errors(tmp_path, run_avvp):
    root = tmp_path / "feats"
    release_tree(root, MADE_UP[:3])
    out = tmp_path / "s.h5"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "AVVP_eval_audio.csv").write_text("filename\tonset\toffset\tevent_labels\n")
    message = one_line_error(run_avvp("data", "import-han", root, "--out", out, "--annotations", empty))
    assert message == (
        f"error: {empty}: no AVVP_dataset_full.csv and no split file (AVVP_train.csv, AVVP_val_pd.csv, "
        "AVVP_test_pd.csv); expected a folder of LLP annotation files"
    )
    message = one_line_error(run_avvp("data", "import-han", root, "--out", out, "--annotations", tmp_path / "nope"))
    assert message.startswith(f"error: {tmp_path / 'nope'}: no such annotation folder")

    annotations = annotation_folder(tmp_path / "ann", MADE_UP[:3])
    list_file = tmp_path / "ids.txt"
    list_file.write_text(MADE_UP[0] + "\n")
    message = one_line_error(
        run_avvp("data", "import-han", root, "--out", out, "--annotations", annotations, "--video-ids", list_file)
    )
    assert message == "error: --annotations and --video-ids: give one of the two"

    for folder in ("res152", "r2plus1d_18"):
        shutil.move(root / folder, tmp_path / "aside")
        message = one_line_error(run_avvp("data", "import-han", root, "--out", out, "--annotations", annotations))
        layout = "vggish/, res152/, r2plus1d_18/"
        assert message == f"error: {root}: no {folder}/ folder; expected the LLP feature release layout ({layout})"
        shutil.move(tmp_path / "aside", root / folder)
    assert not out.exists()


def test_two_files_for_one_video_is_a_one_line_error(tmp_path, run_avvp):
    root = tmp_path / "feats"
    release_tree(root, MADE_UP[:3])
    write_clip(root, MADE_UP[1])  # also under its whole filename
    annotations = annotation_folder(tmp_path / "ann", MADE_UP[:3])
    message = one_line_error(
        run_avvp("data", "import-han", root, "--out", tmp_path / "s.h5", "--annotations", annotations)
    )
    assert message == (
        f"error: {root / 'vggish'}: two files for video {MADE_UP[1]!r}, {MADE_UP[1]}.npy and {MADE_UP[1][:11]}.npy "
        "(its YouTube id; 1 video(s) in all); expected one, named by either"
    )
    assert not (tmp_path / "s.h5").exists()


def test_a_missing_file_names_both_names_tried(tmp_path):
    root = tmp_path / "feats"
    release_tree(root, MADE_UP[:3])
    for folder in ("vggish", "res152", "r2plus1d_18"):
        (root / folder / f"{MADE_UP[2][:11]}.npy").unlink()
    with pytest.raises(StoreError) as error:
        import_han(root, tmp_path / "s.h5", video_ids=MADE_UP[:3])
    assert str(error.value) == (
        f"{root / 'vggish' / MADE_UP[2]}.npy: no such file (video {MADE_UP[2]!r}; nor {MADE_UP[2][:11]}.npy, its "
        f"YouTube id); 1 of the 3 videos lack a feature file ({MADE_UP[2]!r}); pass --skip-missing to leave them out"
    )


def test_the_missing_file_error_counts_every_video_lacking_one(release, tmp_path):
    root, _ = release
    for video in IDS[1:3]:
        (root / "res152" / f"{video}.npy").unlink()
    with pytest.raises(StoreError) as error:
        import_han(root, tmp_path / "store.h5")
    assert str(error.value).startswith(f"{root / 'res152' / IDS[1]}.npy: no such file")
    assert f"; 2 of the {len(IDS)} videos lack a feature file ({IDS[1]!r}, {IDS[2]!r})" in str(error.value)
    assert not (tmp_path / "store.h5").exists()


def test_export_frames_average_back_to_the_stored_rows():
    from avvp.export_features import frames_of
    from avvp.import_features import average_frames

    rng = np.random.default_rng(0)
    rows = (rng.standard_normal((10, 2048)) * 10.0 ** rng.integers(-8, 4, (10, 2048))).astype(np.float16)
    rows[0, :3] = [0, np.float16(6e-8), -65504]  # zero, a subnormal, the float16 extreme
    frames = frames_of(rows)
    assert frames.shape == (80, 2048) and frames.dtype == np.float32
    assert np.ptp(frames.reshape(10, 8, -1), axis=1)[rows != 0].min() > 0  # varied over the 8 frames
    np.testing.assert_array_equal(average_frames(frames).astype(np.float16), rows)


def test_export_refuses_two_videos_under_one_name_and_an_existing_folder(tmp_path, run_avvp):
    from avvp.store import write_store

    ids = ["abcdefghijk_0_10", "abcdefghijk_30_40"]
    streams = {name: np.zeros((2, 10, width), np.float16) for name, width in RAW_WIDTHS.items()}
    store = write_store(tmp_path / "s.h5", ids, streams)
    message = one_line_error(run_avvp("data", "export-han", store, "--out", tmp_path / "rel"))
    assert message == (
        "error: videos 'abcdefghijk_0_10' and 'abcdefghijk_30_40' would both be written as abcdefghijk.npy; "
        "use --names filename"
    )
    assert not (tmp_path / "rel").exists()
    code, _, stderr = run_avvp("data", "export-han", store, "--out", tmp_path / "rel", "--names", "filename")
    assert code == 0, stderr
    assert sorted(p.stem for p in (tmp_path / "rel" / "res152").iterdir()) == ids
    message = one_line_error(run_avvp("data", "export-han", store, "--out", tmp_path / "rel", "--names", "filename"))
    assert message == f"error: {tmp_path / 'rel'}: already exists; pass --overwrite to replace it"
