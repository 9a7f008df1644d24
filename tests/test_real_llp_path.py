"""The real-LLP path: a store with gaps (--missing), the three split files alone (--no-eval), the tables' cache key
on the release layout, --jobs, and the reproduce script's usage."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from avvp.annotations import SPLIT_FILES, load_split
from avvp.benchmarks.tables import ROW_NAMES, StageCache, finetune_stage, run_tables
from avvp.errors import AvvpError
from avvp.finetune.cli import main as finetune_main
from avvp.store import read_store, write_store
from tests.conftest import assert_one_line_error, run_cli

REPO = Path(__file__).resolve().parents[1]
GAPS = {"train": 3, "val": 2, "test": 4}
"""Videos of each split left out of the store with gaps (its first ones)."""


@pytest.fixture(scope="module")
def gappy(tiny_llp, tmp_path_factory):
    """LLP-sim tiny's annotations beside a llp.h5 lacking the first GAPS[split] videos of each split (and no
    pretrain.h5: the rows without pretraining must not need one)."""
    source = tiny_llp
    folder = tmp_path_factory.mktemp("gappy")
    for path in source.glob("*.csv"):
        shutil.copy(path, folder)
    absent = {video for split, n in GAPS.items() for video in load_split(source, split, dense=False).video_ids[:n]}
    store = read_store(source / "llp.h5", dtype="float16")
    keep = [i for i, video in enumerate(store.video_ids) if video not in absent]
    streams = {name: array[keep] for name, array in store.streams.items()}
    write_store(folder / "llp.h5", [store.video_ids[i] for i in keep], streams, source="llp-sim tiny with gaps")
    return folder


@pytest.fixture(scope="module")
def gappy_tables(gappy, tmp_path_factory):
    out = tmp_path_factory.mktemp("tables")
    rows = ["HAN", "Weak-label oracle (reference)"]
    return out, run_tables("tiny", 1, out, data=gappy, rows=rows, verbose=False, epochs=1, missing="skip")


def test_missing_skip_trains_scores_and_tabulates_a_store_with_gaps(gappy, gappy_tables):
    out, report = gappy_tables
    videos = {split: len(load_split(gappy, split, dense=False).video_ids) for split in SPLIT_FILES}
    assert report["splits"] == {split: {"videos": videos[split], "left_out": GAPS[split]} for split in SPLIT_FILES}
    run = Path(report["rows"]["HAN"]["runs"][0])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["left_out"] == GAPS and metrics["test_videos"] == videos["test"] - GAPS["test"]
    assert metrics["left_out_videos"]["test"] == load_split(gappy, "test", dense=False).video_ids[: GAPS["test"]]
    assert json.loads((run / "config.json").read_text())["left_out"] == GAPS
    table = (out / "tables.md").read_text()
    count = videos["test"] - GAPS["test"]
    assert f"test {count} of {videos['test']} ({GAPS['test']} left out)" in table, table
    assert f"train {videos['train'] - GAPS['train']} of {videos['train']} ({GAPS['train']} left out)" in table

    code, stdout, stderr = run_cli(finetune_main, "evaluate", "--run", run)  # the run's own --missing skip
    assert code == 0, stderr
    assert f"({count} videos; {GAPS['test']} left out, not in the store (--missing skip))" in stdout
    rescored = json.loads(run_cli(finetune_main, "evaluate", "--run", run, "--json")[1])
    assert rescored["segment"] == metrics["test"]["segment"] and rescored["left_out"] == GAPS["test"]


def test_avvp_evaluate_scores_the_videos_of_the_store(gappy, gappy_tables, run_avvp):
    run = Path(gappy_tables[1]["rows"]["HAN"]["runs"][0])
    metrics = json.loads((run / "metrics.json").read_text())
    args = ["evaluate", "--pred-audio", run / "pred_audio.csv", "--pred-visual", run / "pred_visual.csv",
            "--annotations", gappy, "--json"]  # fmt: skip
    assert_one_line_error(run_avvp(*args, "--features", gappy / "llp.h5"), "--missing skip")
    assert_one_line_error(run_avvp(*args, "--missing", "skip"), "--missing skip needs --features")
    code, stdout, stderr = run_avvp(*args, "--features", gappy / "llp.h5", "--missing", "skip")
    assert code == 0, stderr
    scores = json.loads(stdout)
    assert scores["left_out"] == GAPS["test"] and scores["event"] == metrics["test"]["event"]


def test_without_missing_skip_the_error_names_the_option(gappy, tmp_path):
    result = run_cli(finetune_main, "--features", gappy / "llp.h5", "--annotations", gappy, "--out", tmp_path / "run",
                     "--preset", "tiny", "--model", "han")  # fmt: skip
    assert_one_line_error(result, f"{GAPS['train']} of the", "AVVP_train.csv", "--missing skip")
    assert not (tmp_path / "run").exists()
    with pytest.raises(AvvpError, match="are not in the store .*pass --missing skip"):
        run_tables("tiny", 1, tmp_path / "tables", data=gappy, rows=["HAN"], verbose=False, epochs=1)


def test_rows_without_pretraining_need_no_pretrain_h5(gappy, gappy_tables, tmp_path):
    assert not (gappy / "pretrain.h5").exists() and "HAN" in gappy_tables[1]["rows"]
    with pytest.raises(AvvpError, match=r"no pretrain.h5, the pretraining corpus that row\(s\) Pretrained, "):
        run_tables("tiny", 1, tmp_path / "tables", data=gappy, rows=["Pretrained"], verbose=False, missing="skip")


def test_parse_missing_videos(gappy, gappy_tables, tmp_path, run_avvp):
    run = gappy_tables[1]["rows"]["HAN"]["runs"][0]
    absent, present = load_split(gappy, "test", dense=False).video_ids[GAPS["test"] - 1 : GAPS["test"] + 1]
    args = ["parse", "--run", run, "--features", gappy / "llp.h5", "--videos", f"{present},{absent}"]
    assert_one_line_error(run_avvp(*args, "--out", tmp_path / "a.json"), "1 of the 2 videos", "--missing skip")
    code, stdout, stderr = run_avvp(*args, "--out", tmp_path / "b.json", "--missing", "skip")
    assert code == 0 and "left out 1 of the 2 videos" in stderr and absent in stderr
    assert list(json.loads((tmp_path / "b.json").read_text())["videos"]) == [present]


def test_three_split_files_name_the_eval_files_or_train_with_no_eval(tiny_llp, tmp_path):
    annotations = tmp_path / "splits"
    annotations.mkdir()
    for name in SPLIT_FILES.values():
        shutil.copy(tiny_llp / name, annotations)
    args = ["--features", tiny_llp / "llp.h5", "--annotations", annotations, "--preset", "tiny", "--model", "han"]
    result = run_cli(finetune_main, *args, "--out", tmp_path / "refused")
    assert_one_line_error(result, "no AVVP_eval_audio.csv and no AVVP_eval_visual.csv (2 of the 2", "--no-eval")
    code, stdout, stderr = run_cli(finetune_main, *args, "--out", tmp_path / "run", "--no-eval", "--quiet")
    assert code == 0, stderr
    assert "best epoch 2 by the last epoch" in stdout and "no test scores (--no-eval)" in stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"] is None and metrics["val"] is None and metrics["best_epoch"] == 2
    assert (tmp_path / "run" / "model.safetensors").is_file() and not (tmp_path / "run" / "pred_audio.csv").exists()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["evaluation"] is False


def test_the_cache_key_reads_the_annotation_files_not_the_release_beside_them(tiny_llp, tmp_path):
    """The README's layout: the feature download (feats/, one .npy per video and folder) inside the annotation
    folder. The finetuning stage's key hashes the store and the five files it reads, nothing of feats/."""
    annotations = tmp_path / "data"
    annotations.mkdir()
    for path in tiny_llp.glob("*.csv"):
        shutil.copy(path, annotations)
    for folder in ("vggish", "res152", "r2plus1d_18"):
        (annotations / "feats" / folder).mkdir(parents=True)
        for i in range(1000):
            (annotations / "feats" / folder / f"video{i:05d}.npy").write_bytes(b"x")
    cache = StageCache(tmp_path / "cache", verbose=False)
    argv, inputs = finetune_stage(ROW_NAMES["HAN"], tiny_llp / "llp.h5", annotations, "tiny", 0)

    def key() -> dict:
        return {name: cache.fingerprint(path) for name, path in inputs.items()}

    first = key()
    assert len(cache._hashes) == 6 and not any("feats" in memo for memo in cache._hashes)
    (annotations / "feats" / "vggish" / "video00000.npy").write_bytes(b"changed")
    (annotations / "feats" / "vggish" / "new.npy").write_bytes(b"x")
    assert key() == first
    (annotations / "AVVP_test_pd.csv").write_text((annotations / "AVVP_test_pd.csv").read_text() + "\n")
    assert key()["annotations/AVVP_test_pd.csv"] != first["annotations/AVVP_test_pd.csv"]
    assert not (cache.root / "file_hashes.json").exists()  # the memo is written once, at the end of the command
    cache.save_hashes()
    assert len(json.loads((cache.root / "file_hashes.json").read_text())) == 7


def test_jobs_two_gives_the_tables_of_jobs_one(tiny_llp, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # every stage on one thread, at either --jobs (see stage_threads)
    rows = ["HAN", "Base", "Weak-label oracle (reference)"]
    out = tmp_path / "results"
    kept = {}
    for jobs in (1, 2):
        report = run_tables("tiny", 1, out, data=tiny_llp, rows=rows, recipes=["paper"], epochs=1, verbose=False,
                            jobs=jobs)  # fmt: skip
        assert report["stages_run"] == ["finetune-han-seed0", "finetune-base-paper-recipe-seed0"]
        assert json.loads((out / "timings.json").read_text())["jobs"] == jobs
        kept[jobs] = {name: (out / name).read_bytes() for name in ("tables.json", "tables.md")}
        shutil.rmtree(out)  # the second run starts from nothing, in the same folder
    assert kept[2] == kept[1]


def test_reproduce_tables_help():
    script = REPO / "scripts" / "reproduce_tables.sh"
    for flag in ("--help", "-h"):
        result = subprocess.run(["bash", script, flag], capture_output=True, text=True)
        assert result.returncode == 0 and result.stdout.startswith("usage:") and "AVVP_VENV" in result.stdout
    result = subprocess.run(["bash", script, "--seeds"], capture_output=True, text=True)
    assert result.returncode == 2 and "error: --seeds needs a value" in result.stderr


def test_parse_a_filename_of_a_youtube_id_store_hints_at_annotations(gappy, gappy_tables, tmp_path, run_avvp):
    from avvp.video_ids import youtube_id

    store = read_store(gappy / "llp.h5", dtype=None)
    named_by_id = tmp_path / "ytid.h5"
    write_store(named_by_id, [youtube_id(v) for v in store.video_ids], store.streams, source="ids cut to 11")
    run, video = gappy_tables[1]["rows"]["HAN"]["runs"][0], store.video_ids[0]
    args = ["parse", "--run", run, "--features", named_by_id, "--videos", video]
    assert_one_line_error(run_avvp(*args, "--out", tmp_path / "a.json"), f"names its videos by YouTube id (e.g. "
                          f"{youtube_id(video)!r}): pass --annotations DIR")  # fmt: skip
    code, _, stderr = run_avvp(*args, "--out", tmp_path / "b.json", "--annotations", gappy)
    assert code == 0, stderr
    assert list(json.loads((tmp_path / "b.json").read_text())["videos"]) == [video]


def test_jobs_give_each_stage_its_share_of_cores_and_its_own_gpu(tmp_path, monkeypatch):
    import sys
    from functools import partial

    import avvp.benchmarks.tables as tables

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(tables, "available_cores", lambda: 8)
    monkeypatch.setattr(tables, "visible_gpus", lambda: ["3", "5"])
    cache = StageCache(tmp_path / "cache", verbose=False, jobs=2)
    record = (  # the stage writes the GPU and the threads it was given
        "import os, sys; env = os.environ; "
        "open(sys.argv[1], 'w').write(env['CUDA_VISIBLE_DEVICES'] + ' ' + env['OMP_NUM_THREADS'])"
    )

    def stage(name: str) -> str:
        folder = cache.run(name, [sys.executable, "-c", record, "{out}/env.txt"], {})
        return (folder / "env.txt").read_text()

    seen = tables.run_tasks(cache, [partial(stage, "a"), partial(stage, "b"), partial(stage, "a")])
    assert sorted(seen[:2]) == ["3 4", "5 4"] and seen[2] == seen[0]  # 8 cores / 2 jobs; "a" ran once
    assert cache.ran == ["a", "b"]
    failing = [sys.executable, "-c", "raise SystemExit('broken input')"]
    with pytest.raises(AvvpError, match=r"(?s)stage c failed \(exit 1\); log .*broken input"):
        tables.run_tasks(cache, [partial(cache.run, "c", failing, {})])
