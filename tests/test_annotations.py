"""Reading and writing the LLP annotation files: each malformed row is an error naming file and line."""

import numpy as np
import pytest

from avvp.annotations import (
    EVAL_FILES,
    SPLIT_FILES,
    load_split,
    read_events,
    read_predictions,
    read_weak_labels,
    write_events,
)
from avvp.classes import CLASS_INDEX, NUM_CLASSES, NUM_SNIPPETS
from avvp.errors import AnnotationError

VIDEO = "BjCEufrlXm4_20_30"
OTHER = "4YdbENYcIyE_23_33"


def write_tsv(path, *rows: str):
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def events_file(tmp_path, *rows: str, name: str = "events.csv"):
    return write_tsv(tmp_path / name, "filename\tonset\toffset\tevent_labels", *rows)


def split_file(tmp_path, *rows: str, name: str = "split.csv"):
    return write_tsv(tmp_path / name, "filename\tevent_labels", *rows)


def assert_names_line(error: pytest.ExceptionInfo, path, line: int, *fragments: str) -> None:
    """The message is one line that starts with path:line and contains every fragment."""
    message = str(error.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("bad", ["Speech`", "Dgo", "speech", ""])
def test_unknown_class_in_events(tmp_path, bad):
    path = events_file(tmp_path, f"{VIDEO}\t0\t3\tSpeech", f"{VIDEO}\t2\t4\tDog,{bad}")
    with pytest.raises(AnnotationError) as error:
        read_events(path, [VIDEO])
    assert_names_line(error, path, 3, "unknown class", repr(bad))


def test_unknown_class_in_split_file(tmp_path):
    path = split_file(tmp_path, f"{VIDEO}\tSpeech,Dog", f"{OTHER}\tSpeech`")
    with pytest.raises(AnnotationError) as error:
        read_weak_labels(path)
    assert_names_line(error, path, 3, "unknown class", "'Speech`'")


def test_onset_not_below_offset_in_predictions(tmp_path):
    audio = events_file(tmp_path, f"{VIDEO}\t0\t3\tSpeech", f"{VIDEO}\t5\t5\tDog", name="pred_audio.csv")
    visual = events_file(tmp_path, f"{VIDEO}\t6\t2\tDog", name="pred_visual.csv")
    with pytest.raises(AnnotationError) as error:
        read_events(audio, [VIDEO], strict=True)
    assert_names_line(error, audio, 3, "onset 5 is not below offset 5")
    write_tsv(audio, "filename\tonset\toffset\tevent_labels", f"{VIDEO}\t0\t3\tSpeech")
    with pytest.raises(AnnotationError) as error:
        read_predictions(audio, visual, [VIDEO])
    assert_names_line(error, visual, 2, "onset 6 is not below offset 2")


@pytest.mark.parametrize(
    ("onset", "offset", "field"),
    [("0", "11", "'11'"), ("-1", "3", "'-1'"), ("2.5", "4", "'2.5'"), ("x", "4", "'x'"), ("0", "", "''")],
)
def test_second_outside_range_or_not_an_integer(tmp_path, onset, offset, field):
    path = events_file(tmp_path, f"{VIDEO}\t0\t3\tSpeech", f"{VIDEO}\t{onset}\t{offset}\tDog")
    with pytest.raises(AnnotationError) as error:
        read_events(path, [VIDEO])
    assert_names_line(error, path, 3, field, "whole second in 0..10")


@pytest.mark.parametrize("filename", ["Baby_cry_infant_cry", "BjCEufrlXm4", "BjCEufrlXm4_20", "BjCEufr lXm4_20_30"])
def test_filename_not_ytid_start_end(tmp_path, filename):
    path = events_file(tmp_path, f"{VIDEO}\t0\t3\tSpeech", f"{filename}\t0\t3\tSpeech")
    with pytest.raises(AnnotationError) as error:
        read_events(path, [VIDEO])
    assert_names_line(error, path, 3, repr(filename), "YTID_start_end")
    path = split_file(tmp_path, f"{filename}\tSpeech")
    with pytest.raises(AnnotationError) as error:
        read_weak_labels(path)
    assert_names_line(error, path, 2, repr(filename), "YTID_start_end")


def test_missing_column(tmp_path):
    path = write_tsv(tmp_path / "events.csv", "filename\tonset\tevent_labels", f"{VIDEO}\t0\tSpeech")
    with pytest.raises(AnnotationError) as error:
        read_events(path, [VIDEO])
    assert_names_line(error, path, 1, "missing column(s) offset")
    path = write_tsv(tmp_path / "split.csv", "filename,event_labels", f"{VIDEO},Speech")  # commas, not tabs
    with pytest.raises(AnnotationError) as error:
        read_weak_labels(path)
    assert_names_line(error, path, 1, "missing column(s) filename, event_labels")


def test_wrong_number_of_fields(tmp_path):
    path = events_file(tmp_path, f"{VIDEO}\t0\t3\tSpeech", f"{VIDEO}\t0\t3", f"{VIDEO}\t0\t3\tDog")
    with pytest.raises(AnnotationError) as error:
        read_events(path, [VIDEO])
    assert_names_line(error, path, 3, "3 tab-separated field(s); expected 4")
    path = split_file(tmp_path, f"{VIDEO}\tSpeech\tDog")
    with pytest.raises(AnnotationError) as error:
        read_weak_labels(path)
    assert_names_line(error, path, 2, "3 tab-separated field(s); expected 2")


def test_duplicated_video_in_split_file(tmp_path):
    path = split_file(tmp_path, f"{VIDEO}\tSpeech", f"{OTHER}\tDog", f"{VIDEO}\tCat")
    with pytest.raises(AnnotationError) as error:
        read_weak_labels(path)
    assert_names_line(error, path, 4, repr(VIDEO), "first at line 2")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(AnnotationError, match="no such annotation file"):
        read_events(tmp_path / "absent.csv", [VIDEO])


def test_directory_is_named_as_such(tmp_path):
    with pytest.raises(AnnotationError) as error:
        read_events(tmp_path, [VIDEO])
    assert str(error.value) == f"{tmp_path}: is a directory; expected a tab-separated annotation file"


def test_file_not_utf8_is_named_with_line(tmp_path):
    latin1 = tmp_path / "latin1.csv"
    rows = [f"{VIDEO}\t0\t3\tSpeech"] * 2000 + ["Caf\xe9_0_10\t0\t3\tSpeech"]  # past the first read buffer
    latin1.write_bytes("\n".join(["filename\tonset\toffset\tevent_labels", *rows]).encode("latin-1"))
    with pytest.raises(AnnotationError) as error:
        read_events(latin1, [VIDEO])
    assert_names_line(error, latin1, 2002, "not UTF-8 text", "byte 0xe9")
    hdf5 = tmp_path / "features.h5"
    hdf5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 64)
    binary = tmp_path / "random.bin"
    binary.write_bytes(np.random.default_rng(0).bytes(100_000))
    for path in (hdf5, binary):
        with pytest.raises(AnnotationError) as error:
            read_weak_labels(path)
        assert_names_line(error, path, 1, "not UTF-8 text")


def test_field_over_the_csv_limit_is_named_with_line(tmp_path):
    path = events_file(tmp_path, f"{VIDEO}\t0\t3\tSpeech", f"{VIDEO}\t0\t3\t{'Dog,' * 40_000}Dog")
    with pytest.raises(AnnotationError) as error:
        read_events(path, [VIDEO])
    assert_names_line(error, path, 3, "field larger than field limit")


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text(f"filename\tevent_labels\n{VIDEO}\tSpeech,Dog\n", encoding="utf-8-sig")
    weak = read_weak_labels(path)
    assert weak.video_ids == [VIDEO] and np.flatnonzero(weak.labels[0]).tolist() == sorted(
        [CLASS_INDEX["Speech"], CLASS_INDEX["Dog"]]
    )
    path = tmp_path / "events.csv"
    path.write_text(f"filename\tonset\toffset\tevent_labels\n{VIDEO}\t2\t4\tDog\n", encoding="utf-8-sig")
    assert np.flatnonzero(read_events(path, [VIDEO])[0, CLASS_INDEX["Dog"]]).tolist() == [2, 3]


def test_predictions_for_other_videos_are_ignored_with_one_note(tmp_path, capsys):
    others = [OTHER, "aaaaaaaaaaa_0_10", "bbbbbbbbbbb_0_10", "ccccccccccc_0_10"]
    audio = events_file(
        tmp_path, f"{VIDEO}\t0\t3\tSpeech", *(f"{other}\t0\t1\tCat" for other in others), name="pred_audio.csv"
    )
    visual = events_file(tmp_path, f"{OTHER}\t0\t2\tDog", f"{OTHER}\t4\t5\tDog", name="pred_visual.csv")
    capsys.readouterr()
    pred = read_predictions(audio, visual, [VIDEO])
    assert np.flatnonzero(pred.audio[0, CLASS_INDEX["Speech"]]).tolist() == [0, 1, 2]
    assert pred.audio.sum() == 3 and not pred.visual.any()
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 1 and notes[0].startswith("note: "), notes
    assert "6 prediction row(s) for 4 video(s) not in the 1 evaluated" in notes[0]
    assert all(repr(other) in notes[0] for other in others[:3]) and repr(others[3]) not in notes[0]
    read_predictions(audio, visual, [VIDEO, *others])
    assert capsys.readouterr().err == ""


def annotation_folder(tmp_path, weak_rows, audio_rows, visual_rows):
    split_file(tmp_path, *weak_rows, name=SPLIT_FILES["test"])
    events_file(tmp_path, *audio_rows, name=EVAL_FILES["audio"])
    events_file(tmp_path, *visual_rows, name=EVAL_FILES["visual"])
    return tmp_path


def test_ground_truth_keeps_onset_not_below_offset_as_no_snippet(tmp_path, capsys):
    folder = annotation_folder(
        tmp_path,
        [f"{VIDEO}\tSpeech,Dog", f"{OTHER}\tCat"],
        [f"{VIDEO}\t0\t3\tSpeech", f"{VIDEO}\t4\t4\tDog", f"{OTHER}\t7\t2\tCat"],
        [f"{VIDEO}\t1\t2\tDog"],
    )
    split = load_split(folder, "test")
    assert split.video_ids == [VIDEO, OTHER]
    audio = split.dense.audio
    assert np.flatnonzero(audio[0, CLASS_INDEX["Speech"]]).tolist() == [0, 1, 2]
    assert not audio[0, CLASS_INDEX["Dog"]].any() and not audio[1].any()
    assert np.flatnonzero(split.dense.visual[0, CLASS_INDEX["Dog"]]).tolist() == [1]
    assert "2 row(s) with onset >= offset" in capsys.readouterr().err
    # The same file read strictly, as predictions are, is an error.
    with pytest.raises(AnnotationError) as error:
        read_events(folder / EVAL_FILES["audio"], [VIDEO, OTHER], strict=True)
    assert_names_line(error, folder / EVAL_FILES["audio"], 3, "onset 4 is not below offset 4")


def test_events_outside_the_weak_labels_are_kept(tmp_path):
    folder = annotation_folder(
        tmp_path,
        [f"{VIDEO}\tSpeech"],
        [f"{VIDEO}\t0\t10\tSpeech", f"{VIDEO}\t3\t5\tViolin_fiddle", f"{OTHER}\t0\t1\tCat"],  # OTHER: another split
        [f"{VIDEO}\t8\t10\tDog,Cat"],
    )
    split = load_split(folder, "test")
    assert split.weak.labels[0].sum() == 1
    assert np.flatnonzero(split.dense.audio[0, CLASS_INDEX["Violin_fiddle"]]).tolist() == [3, 4]
    for name in ("Dog", "Cat"):
        assert np.flatnonzero(split.dense.visual[0, CLASS_INDEX[name]]).tolist() == [8, 9]


def test_write_events_read_events_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    video_ids = [f"{i:011d}_{i}_{i + 10}" for i in range(300)]
    for density in (0.0, 0.1, 0.5, 0.9, 1.0):
        dense = rng.random((len(video_ids), NUM_CLASSES, NUM_SNIPPETS)) < density
        path = write_events(tmp_path / f"pred_{density}.csv", video_ids, dense)
        np.testing.assert_array_equal(read_events(path, video_ids, strict=True), dense)
        # Reading for a reordered subset picks the same rows.
        np.testing.assert_array_equal(read_events(path, video_ids[::-3]), dense[::-3])


def test_write_events_refuses_existing_file(tmp_path):
    dense = np.zeros((1, NUM_CLASSES, NUM_SNIPPETS), dtype=bool)
    path = write_events(tmp_path / "pred.csv", [VIDEO], dense)
    with pytest.raises(Exception, match="already exists"):
        write_events(path, [VIDEO], dense)
    write_events(path, [VIDEO], dense, overwrite=True)


def test_real_split_files_load(real_llp):
    assert len(load_split(real_llp, "train").video_ids) == 10000
    val, test = load_split(real_llp, "val"), load_split(real_llp, "test")
    assert (len(val.video_ids), len(test.video_ids)) == (649, 1200)
    for split in (val, test):
        assert split.dense.audio.shape == (len(split.video_ids), NUM_CLASSES, NUM_SNIPPETS)
        assert split.dense.visual.shape == split.dense.audio.shape
        assert (split.dense.audio | split.dense.visual).any(axis=(1, 2)).all()
