"""`avvp evaluate` on the real LLP test split with the weak-label oracle, written in the LLP eval format."""

import json
import subprocess
import sys

import pytest

from avvp.annotations import load_split, write_events
from avvp.baselines import reference_predictions
from avvp.classes import CLASSES

SEGMENT = [76.1, 60.3, 52.6, 63.0, 71.7]
EVENT = [63.0, 55.8, 44.7, 54.5, 61.6]


@pytest.fixture(scope="module")
def oracle_files(real_llp, tmp_path_factory):
    """The weak-label oracle (every weak-label class on all 10 snippets, audio and visual) as two eval files."""
    oracle = reference_predictions(load_split(real_llp, "test", dense=False), "weak-oracle")
    folder = tmp_path_factory.mktemp("weak_oracle")
    audio = write_events(folder / "pred_audio.csv", oracle.video_ids, oracle.audio)
    visual = write_events(folder / "pred_visual.csv", oracle.video_ids, oracle.visual)
    return real_llp, audio, visual


def evaluate_args(annotations, audio, visual, *extra):
    return ("evaluate", "--pred-audio", audio, "--pred-visual", visual, "--annotations", annotations, *extra)


def test_table(oracle_files, run_avvp):
    code, stdout, stderr = run_avvp(*evaluate_args(*oracle_files))
    assert code == 0, stderr
    lines = stdout.strip().splitlines()
    assert lines[0] == "test: 1200 videos"
    assert lines[1].startswith("F1 in %, higher is better")  # what the table holds
    assert lines[2].split() == ["level", "Audio", "Visual", "AV", "Type@AV", "Event@AV"]
    assert lines[3].split() == ["segment", *map(str, SEGMENT)]
    assert lines[4].split() == ["event", *map(str, EVENT)]


def test_json_has_both_levels(oracle_files, run_avvp):
    code, stdout, stderr = run_avvp(*evaluate_args(*oracle_files, "--json"))
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["split"] == "test" and result["videos"] == 1200
    names = ["audio", "visual", "av", "type_av", "event_av"]
    assert [round(result["segment"][name], 1) for name in names] == SEGMENT
    assert [round(result["event"][name], 1) for name in names] == EVENT


def test_per_class_prints_25_classes(oracle_files, run_avvp):
    code, stdout, stderr = run_avvp(*evaluate_args(*oracle_files, "--per-class"))
    assert code == 0, stderr
    lines = stdout.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["class", "Audio", "Visual", "AV"])
    rows = [line.split() for line in lines[header + 1 :]]
    assert [row[0] for row in rows] == list(CLASSES)
    assert all(len(row) == 4 for row in rows)
    code, stdout, _ = run_avvp(*evaluate_args(*oracle_files, "--per-class", "--json"))
    assert list(json.loads(stdout)["per_class_segment_f1"]["audio"]) == list(CLASSES)


def test_bad_predictions_file_is_one_line_with_file_and_line(oracle_files, tmp_path):
    annotations, audio, _ = oracle_files
    visual = tmp_path / "pred_visual.csv"
    rows = ["filename\tonset\toffset\tevent_labels", "4YdbENYcIyE_23_33\t0\t4\tBaby_cry_infant_cry"]
    visual.write_text("\n".join([*rows, "KSRjje7GH44_60_70\t8\t10\tSpeech`"]) + "\n")
    command = [sys.executable, "-m", "avvp.commands", *map(str, evaluate_args(annotations, audio, visual))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if not line.startswith("note: ")]
    assert errors == [f"error: {visual}:3: unknown class 'Speech`'; expected one of the 25 LLP classes"]


def test_train_split_is_refused(oracle_files, run_avvp):
    code, _, stderr = run_avvp(*evaluate_args(*oracle_files, "--split", "train"))
    assert code == 1 and "only val and test" in stderr


def test_predictions_of_another_split_are_scored_with_one_note(oracle_files, run_avvp, tmp_path):
    annotations, _, _ = oracle_files
    val = reference_predictions(load_split(annotations, "val", dense=False), "weak-oracle")
    audio = write_events(tmp_path / "val_audio.csv", val.video_ids, val.audio)
    visual = write_events(tmp_path / "val_visual.csv", val.video_ids, val.visual)
    code, _, stderr = run_avvp(*evaluate_args(annotations, audio, visual))
    assert code == 0, stderr
    notes = [line for line in stderr.splitlines() if "not in the" in line]
    assert len(notes) == 1 and notes[0].startswith("note: "), stderr
    assert "649 video(s) not in the 1200 evaluated" in notes[0] and repr(val.video_ids[0]) in notes[0]
    code, _, stderr = run_avvp(*evaluate_args(annotations, audio, visual, "--split", "val"))
    assert code == 0 and "not in the" not in stderr


@pytest.mark.parametrize("kind", ["hdf5", "latin-1", "directory"])
def test_unreadable_predictions_file_is_one_line(oracle_files, run_avvp, tmp_path, kind):
    annotations, _, visual = oracle_files
    audio = tmp_path / "pred_audio.csv"
    if kind == "hdf5":
        audio.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(1024))
        expected = f"error: {audio}:1: not UTF-8 text"
    elif kind == "latin-1":
        audio.write_bytes("filename\tonset\toffset\tevent_labels\nCaf\xe9_0_10\t0\t3\tSpeech\n".encode("latin-1"))
        expected = f"error: {audio}:2: not UTF-8 text"
    else:
        audio.mkdir()
        expected = f"error: {audio}: is a directory"
    code, stdout, stderr = run_avvp(*evaluate_args(annotations, audio, visual))
    errors = [line for line in stderr.splitlines() if not line.startswith("note: ")]
    assert code == 1 and stdout == ""
    assert len(errors) == 1 and errors[0].startswith(expected), stderr


# --- on LLP-sim tiny: a split with no video, strict JSON, repeated prediction rows ---


@pytest.fixture
def tiny_predictions(tiny_llp, tmp_path):
    """The annotation files of LLP-sim tiny (a copy) and the weak-label oracle of its test split as predictions."""
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    for path in tiny_llp.glob("*.csv"):
        (annotations / path.name).write_bytes(path.read_bytes())
    oracle = reference_predictions(load_split(annotations, "test", dense=False), "weak-oracle")
    audio = write_events(tmp_path / "pred_audio.csv", oracle.video_ids, oracle.audio)
    visual = write_events(tmp_path / "pred_visual.csv", oracle.video_ids, oracle.visual)
    return annotations, audio, visual


@pytest.mark.parametrize("command", ["evaluate", "baselines"])
def test_a_split_with_only_a_header_is_an_error(tiny_predictions, run_avvp, command):
    annotations, audio, visual = tiny_predictions
    split_file = annotations / "AVVP_test_pd.csv"
    split_file.write_text("filename\tevent_labels\n")
    args = evaluate_args(*tiny_predictions) if command == "evaluate" else ("data", "baselines")
    code, stdout, stderr = run_avvp(*args, "--annotations", annotations, "--json")
    assert code == 1 and stdout == ""
    assert stderr.strip() == f"error: {split_file}: no videos (only a header); nothing to score"


def test_json_prints_a_score_that_does_not_exist_as_null(tiny_predictions, run_avvp, monkeypatch):
    import avvp.metrics

    real_evaluate = avvp.metrics.evaluate

    def with_a_nan(pred, truth):
        scores = real_evaluate(pred, truth)
        scores["event"]["av"] = float("nan")
        return scores

    monkeypatch.setattr(avvp.metrics, "evaluate", with_a_nan)
    code, stdout, stderr = run_avvp(*evaluate_args(*tiny_predictions, "--json"))
    assert code == 0, stderr

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    assert json.loads(stdout, parse_constant=refuse)["event"]["av"] is None


def test_a_repeated_prediction_row_is_an_error_naming_both_lines(tiny_predictions, run_avvp):
    _, audio, _ = tiny_predictions
    lines = audio.read_text().splitlines()
    audio.write_text("\n".join([*lines, lines[3]]) + "\n")  # the event of line 4 again, as the last line
    code, stdout, stderr = run_avvp(*evaluate_args(*tiny_predictions))
    video, onset, offset, label = lines[3].split("\t")
    assert code == 1 and stdout == ""
    assert stderr.strip() == (
        f"error: {audio}:{len(lines) + 1}: the event {video} {onset}-{offset} {label} is also at line 4; "
        "each event is listed once"
    )
