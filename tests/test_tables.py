"""The table benchmark's stage cache: reruns reuse finished stages, and a changed input or config redoes them."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from avvp.benchmarks.tables import (
    BASE_FAMILY,
    PAPER,
    ROW_NAMES,
    ROWS,
    finetune_stage,
    format_tables,
    load_paper_figures,
    run_tables,
    select_rows,
    split_row_names,
)
from avvp.errors import ConfigError
from avvp.metrics import SCORE_NAMES
from avvp.store import read_store, write_store
from tests.conftest import SHARED_LLP


@pytest.fixture
def data(tiny_llp, tmp_path):
    """A private copy of the tiny LLP-sim corpus, so the test may change its files."""
    folder = tmp_path / "data"
    shutil.copytree(tiny_llp, folder)
    return folder


def test_cached_stages_are_reused_and_redone_when_input_or_config_changes(data, tmp_path):
    out = tmp_path / "results"
    rows = ["HAN", "Predict nothing (reference)"]
    first = run_tables("tiny", 1, out, data=data, rows=rows, verbose=False, epochs=1)
    assert first["stages_run"] == ["finetune-han-seed0"]
    assert first["rows"]["Predict nothing (reference)"]["segment"]["event_av"]["mean"] == 0.0
    assert "LLP-sim" in (out / "tables.md").read_text()
    assert json.loads((out / "tables.json").read_text())["rows"].keys() == set(rows)

    again = run_tables("tiny", 1, out, data=data, rows=rows, verbose=False, epochs=1)
    assert again["stages_run"] == [] and again["stages_cached"] == ["finetune-han-seed0"]
    assert again["rows"]["HAN"]["segment"] == first["rows"]["HAN"]["segment"]

    # A config change: one seed more.
    more_seeds = run_tables("tiny", 2, out, data=data, rows=rows, verbose=False, epochs=1)
    assert more_seeds["stages_run"] == ["finetune-han-seed1"]
    assert more_seeds["stages_cached"] == ["finetune-han-seed0"]

    store = read_store(data / "llp.h5", dtype="float16")  # input change: the features of one video
    store.streams["audio"][0] += np.float16(0.5)
    write_store(data / "llp.h5", store.video_ids, store.streams, overwrite=True, source="llp-sim test edit")
    changed = run_tables("tiny", 2, out, data=data, rows=rows, verbose=False, epochs=1)
    assert changed["stages_run"] == ["finetune-han-seed0", "finetune-han-seed1"]


def test_a_cache_named_another_way_keeps_its_stages(tiny_llp, tmp_path, monkeypatch):
    """Paths inside the cache enter the key relative to it: OUT given relative, or moved, reuses every stage."""
    rows = ["HAN", "Speech everywhere (reference)"]
    first = run_tables("tiny", 1, tmp_path / "results", rows=rows, verbose=False)  # LLP-sim generated in the cache
    assert first["stages_run"] == ["data", "finetune-han-seed0"]
    assert first["rows"]["Speech everywhere (reference)"]["segment"]["audio"]["mean"] > 0
    (tmp_path / "results").rename(tmp_path / "moved")
    monkeypatch.chdir(tmp_path)
    again = run_tables("tiny", 1, tmp_path.joinpath("moved").relative_to(tmp_path), rows=rows, verbose=False)
    assert again["stages_run"] == [] and again["stages_cached"] == ["data", "finetune-han-seed0"]


def test_table_layout_and_bad_options(tmp_path):
    def result(paper):
        return {
            "paper": paper,
            **{
                level: {name: {"mean": 50.0, "std": 1.0, "seeds": [49.0, 51.0]} for name in SCORE_NAMES}
                for level in ("segment", "event")
            },
        }

    report = {
        "llp_sim": True, "preset": "tiny", "seeds": 2,
        "rows": {"HAN": result("HAN"), "Base+GCAA (release recipe)": result("Base+GCAA"), "Control": result(None)},
    }  # fmt: skip
    table = format_tables(report)
    assert "| HAN | 50.0 ± 1.0 [60.1] |" in table  # ours beside HAN's published segment-level Audio
    assert "| Base+GCAA (release recipe) | 50.0 ± 1.0 [62.0] |" in table  # the paper's Base+GCAA, both recipes
    assert "| Control | 50.0 ± 1.0 [—] |" in table  # a row the paper does not have
    assert "| 50.0 ± 1.0 [50.7] |\n" in table.split("Table 2")[1]  # Base+GCAA's event-level Event@AV, last cell
    assert "Table 2: event-level" in table
    with pytest.raises(ConfigError, match="unknown row"):
        run_tables("tiny", 1, tmp_path, rows=["Nope"], verbose=False)
    with pytest.raises(ConfigError, match="--preset"):
        run_tables("huge", 1, tmp_path, verbose=False)


def test_rows_under_both_recipes_and_their_selection():
    names = [row.name for row in select_rows(None)]
    assert names == [row.name for row in ROWS]
    for family, model in BASE_FAMILY:
        paper_row, release_row = ROW_NAMES[f"{family} (paper recipe)"], ROW_NAMES[f"{family} (release recipe)"]
        assert (paper_row.model, paper_row.recipe, release_row.recipe) == (model, "paper", "release")
        assert paper_row.paper == release_row.paper == family
    assert [row.recipe for row in ROWS if row.model == "han" and not row.refine_from] == [None]  # HAN once, its recipe
    toolkit = [row for row in ROWS if row.source in ("frozen", "e2e") and row.pretrain_recipe is None]
    assert toolkit and all(row.recipe is None for row in toolkit)  # the paper recipe: no flag
    release = [row for row in ROWS if row.source == "e2e" and row.pretrain_recipe == "release"]
    assert len(release) == 6 and all(row.recipe == "release" for row in release)  # 3 variants, each with its control
    assert set(release) <= set(select_rows(None, ["paper"]))  # their one recipe, whatever --recipes says

    assert [row.name for row in select_rows(["Base+GCAA"], ["release"])] == ["Base+GCAA (release recipe)"]
    assert [row.name for row in select_rows(["HAN", "Base"])] == ["HAN", "Base (paper recipe)", "Base (release recipe)"]
    assert [row.name for row in select_rows(["Base (paper recipe)", "HAN"], ["release"])] == [
        "HAN",
        "Base (paper recipe)",
    ]  # a row named outright is run whatever --recipes says; table order kept
    default_release = select_rows(None, ["release"])
    assert not any(row.recipe == "paper" for row in default_release) and ROW_NAMES["HAN"] in default_release
    with pytest.raises(ConfigError, match=r"--recipes text: expected one or more of paper, release"):
        select_rows(None, ["text"])
    with pytest.raises(ConfigError, match=r"unknown row\(s\) Base\+Skip; .*a family for its recipes: Base, "):
        select_rows(["Base+Skip"])


def test_row_names_with_commas_survive_the_split():
    text = "HAN, Pretrain E2E (uni, release architecture),Pretrained (release architecture) - untrained control,"
    names = split_row_names(text)
    assert names == ["HAN", "Pretrain E2E (uni, release architecture)",
                     "Pretrained (release architecture) - untrained control"]  # fmt: skip
    assert all(name in ROW_NAMES for name in names)


def test_the_finetune_command_names_the_recipe(tmp_path):
    features, annotations = tmp_path / "llp.h5", tmp_path
    argv, inputs = finetune_stage(ROW_NAMES["Base+Adv+Skip (release recipe)"], features, annotations, "demo", 2)
    assert argv[1:] == [
        "--model", "base-adv-skip", "--features", str(features), "--annotations", str(annotations),
        "--out", "{out}/run", "--preset", "demo", "--seed", "2", "--recipe", "release",
    ]  # fmt: skip
    read = ["AVVP_train.csv", "AVVP_val_pd.csv", "AVVP_test_pd.csv", "AVVP_eval_audio.csv", "AVVP_eval_visual.csv"]
    assert inputs == {"features": features, **{f"annotations/{name}": annotations / name for name in read}}
    han, _ = finetune_stage(ROW_NAMES["HAN"], features, annotations, "demo", 0)
    assert "--recipe" not in han  # unchanged command: HAN's cached stages stay valid
    e2e, inputs = finetune_stage(ROW_NAMES["Pretrain E2E (uni)"], features, annotations, "demo", 0, tmp_path / "enc")
    assert "--recipe" not in e2e and e2e[-3:] == ["--e2e", "--encoder", str(tmp_path / "enc")]
    assert inputs["encoder"] == tmp_path / "enc"


def test_every_paper_row_has_its_published_figures():
    for row in ROWS:
        if row.source != "reference" and not row.control and not row.refine_from:  # nor a control or +MA row
            assert row.paper in PAPER, row.name
            assert all(len(PAPER[row.paper][level]) == len(SCORE_NAMES) for level in ("segment", "event"))
    assert PAPER["Base+Adv+Skip+GCAA"]["segment"]["type_av"] == 55.5
    assert PAPER["Pretrain E2E (multi)"]["event"]["event_av"] == 51.2


def test_the_transcription_matches_the_shared_paper_tables():
    """benchmarks/paper_tables.json against ../shared/paper_tables.md, where that file is present."""
    source = SHARED_LLP.parent / "paper_tables.md"
    if not source.is_file():
        pytest.skip("../shared/paper_tables.md not present")
    text = source.read_text(encoding="utf-8")
    published = {}
    for level, heading in (("segment", "Table 1 (segment level)"), ("event", "Table 2 (event level)")):
        block = text.split(heading, 1)[1].split("\n\n", 2)[1]  # the table after the heading's line
        for line in block.splitlines()[2:]:
            name, *figures = (cell.strip() for cell in line.strip().strip("|").split("|"))
            name = re.sub(r" \(Tian et al\., as published\)$", "", name)
            published.setdefault(name, {})[level] = dict(zip(SCORE_NAMES, map(float, figures), strict=True))
    assert load_paper_figures() == published


def test_a_base_family_row_runs_under_each_recipe(tiny_llp, tmp_path):
    report = run_tables("tiny", 1, tmp_path / "results", data=tiny_llp, rows=["Base+GCAA"], verbose=False)
    assert report["stages_run"] == [
        "finetune-base-gcaa-paper-recipe-seed0",
        "finetune-base-gcaa-release-recipe-seed0",
    ]
    for recipe in ("paper", "release"):
        result = report["rows"][f"Base+GCAA ({recipe} recipe)"]
        assert (result["recipe"], result["paper"]) == (recipe, "Base+GCAA")
        config = json.loads((Path(result["runs"][0]) / "config.json").read_text())
        assert config["recipe"] == recipe and config["gcaa_first_snippet"] == (recipe == "release")
    assert "| Base+GCAA (release recipe) |" in (tmp_path / "results" / "tables.md").read_text()


def test_every_pretrained_row_has_its_control_and_the_difference():
    from avvp.benchmarks.tables import CONTROL_SUFFIX, minus_control

    pretrained = [row for row in ROWS if row.source in ("frozen", "e2e") and not row.control]
    for row in pretrained:
        control = ROW_NAMES[row.name + CONTROL_SUFFIX]
        assert (control.model, control.source, control.variant, control.control) == (row.model, row.source,
                                                                                      row.variant, True)  # fmt: skip
        assert [r.name for r in select_rows([row.name])] == [row.name, control.name]  # selected together

    def result(seeds):
        return {level: {name: {"mean": float(np.mean(seeds)), "std": float(np.std(seeds, ddof=1)), "seeds": seeds}
                        for name in SCORE_NAMES} for level in ("segment", "event")}  # fmt: skip

    rows = {"Pretrained": result([40.0, 44.0]), "Pretrained" + CONTROL_SUFFIX: result([41.0, 42.0])}
    rows["Pretrained"]["minus_control"] = minus_control(rows["Pretrained"], rows["Pretrained" + CONTROL_SUFFIX])
    difference = rows["Pretrained"]["minus_control"]["segment"]["audio"]  # -1 and +2: the sample std is 1.5 * sqrt(2)
    assert difference["seeds"] == [-1.0, 2.0] and difference["mean"] == 0.5
    assert difference["std"] == pytest.approx(2.1213203)
    table = format_tables({"llp_sim": True, "preset": "tiny", "seeds": 2, "rows": rows})
    assert "| *Pretrained minus its control* | +0.5 ± 2.1 |" in table
    assert "| Pretrained - untrained control | 41.5 ± 0.7 [—] |" in table  # 41 and 42: sqrt(0.5)
