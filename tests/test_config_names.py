"""One name per setting, and one precedence for both stages.

Each model setting is followed from its command-line flag to the module attribute it sets: the command is run
in this process with distinctive values and stopped right after it has built its model, and the value must
arrive under the same name (or at the `nn.Linear`/`nn.Dropout`/BERT config attribute it ends in).
"""

from __future__ import annotations

import pytest
from conftest import run_cli
from test_pretrain_train import make_corpus
from torch import nn
from typer.testing import CliRunner

from avvp.errors import AvvpError
from avvp.finetune.cli import app as finetune_app
from avvp.finetune.cli import main as finetune_main
from avvp.finetune.config import PRESETS as FINETUNE_PRESETS
from avvp.finetune.config import RECIPES as FINETUNE_RECIPES
from avvp.finetune.config import FinetuneConfig
from avvp.finetune.models.attention import Attention, FeedForward
from avvp.presets import PRECEDENCE, resolve_settings
from avvp.pretrain.cli import app as pretrain_app
from avvp.pretrain.cli import main as pretrain_main
from avvp.pretrain.config import ARCHITECTURE_SIZES, PretrainConfig
from avvp.pretrain.config import PRESETS as PRETRAIN_PRESETS
from avvp.pretrain.config import RECIPES as PRETRAIN_RECIPES

HIDDEN_SIZE, NUM_HEADS, INTERMEDIATE_SIZE, DROPOUT, NUM_LAYERS = 48, 3, 40, 0.25, 3
"""Distinctive values: no default, preset or recipe has any of them."""


class Built(AvvpError):
    """Stops a command once it has built its model (a one-line error to the CLI)."""


def built_by(monkeypatch, module, name: str, main, *args) -> nn.Module:
    """Run `main` with `args`, record what `module.name` (the command's model builder) returns, stop there."""
    real, models = getattr(module, name), []

    def record(*inner_args, **kwargs):
        models.append(real(*inner_args, **kwargs))
        raise Built("model built")

    monkeypatch.setattr(module, name, record)
    code, _, stderr = run_cli(main, *args)
    assert models, stderr
    assert code == 1 and "model built" in stderr
    return models[0]


@pytest.mark.parametrize("model_name", ["base-adv-skip-gcaa", "han", "mmil"])
def test_finetune_sizes_reach_the_modules_by_name(model_name, tiny_llp, tmp_path, monkeypatch):
    import avvp.finetune.train

    model = built_by(
        monkeypatch, avvp.finetune.train, "build_model", finetune_main,
        "--model", model_name, "--preset", "tiny", "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp,
        "--out", tmp_path / "run", "--hidden-size", HIDDEN_SIZE, "--num-heads", NUM_HEADS,
        "--intermediate-size", INTERMEDIATE_SIZE, "--dropout", DROPOUT,
    )  # fmt: skip
    parser = model.parser
    assert parser.inputs.audio_proj.out_features == HIDDEN_SIZE
    assert parser.head.prob.in_features == HIDDEN_SIZE
    attentions = [m for m in parser.modules() if isinstance(m, Attention)]
    feed_forwards = [m for m in parser.modules() if isinstance(m, FeedForward)]
    dropouts = [m for m in parser.modules() if isinstance(m, nn.Dropout)]
    if model_name == "mmil":  # the MMIL head alone: a width, no attention
        assert not attentions and not dropouts
        return
    assert attentions and dropouts
    for attention in attentions:
        assert attention.num_heads == NUM_HEADS
        assert attention.q_proj.in_features == attention.out_proj.out_features == HIDDEN_SIZE
        assert attention.dropout == DROPOUT
    if model_name == "han":
        assert parser.layer.linear1.out_features == INTERMEDIATE_SIZE
    else:
        assert len(feed_forwards) == 3  # the two self-attention layers and the cross layer
    for feed_forward in feed_forwards:
        assert feed_forward.linear1.out_features == feed_forward.linear2.in_features == INTERMEDIATE_SIZE
    assert {dropout.p for dropout in dropouts} == {DROPOUT}
    if model_name == "base-adv-skip-gcaa":
        assert parser.discriminator.fc1.in_features == HIDDEN_SIZE
        assert parser.shared_fc.in_features == parser.shared_fc.out_features == HIDDEN_SIZE


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), videos=24)


@pytest.mark.parametrize("architecture", ["toolkit", "release"])
def test_pretrain_sizes_reach_the_encoder_by_name(architecture, corpus, tmp_path, monkeypatch):
    import avvp.pretrain.train

    features, labels = corpus
    encoder = built_by(
        monkeypatch, avvp.pretrain.train, "initial_encoder", pretrain_main,
        "--features", features, "--labels", labels, "--out", tmp_path / "run", "--preset", "tiny",
        "--architecture", architecture, "--hidden-size", HIDDEN_SIZE, "--num-layers", NUM_LAYERS,
        "--num-heads", NUM_HEADS, "--intermediate-size", INTERMEDIATE_SIZE, "--dropout", DROPOUT,
    )  # fmt: skip
    config, bert = encoder.config, encoder.bert
    assert (config.hidden_size, config.num_layers, config.num_heads) == (HIDDEN_SIZE, NUM_LAYERS, NUM_HEADS)
    assert (config.intermediate_size, config.dropout) == (INTERMEDIATE_SIZE, DROPOUT)
    # BERT's own names, set in one place (AVEncoderConfig.bert_config)
    assert (bert.config.hidden_size, bert.config.num_hidden_layers) == (HIDDEN_SIZE, NUM_LAYERS)
    assert (bert.config.num_attention_heads, bert.config.intermediate_size) == (NUM_HEADS, INTERMEDIATE_SIZE)
    assert bert.config.hidden_dropout_prob == bert.config.attention_probs_dropout_prob == DROPOUT
    assert len(bert.encoder.layer) == NUM_LAYERS
    for layer in bert.encoder.layer:
        assert layer.attention.self.num_attention_heads == NUM_HEADS
        assert layer.attention.self.query.in_features == HIDDEN_SIZE
        assert layer.intermediate.dense.out_features == INTERMEDIATE_SIZE
    assert {m.p for m in encoder.modules() if isinstance(m, nn.Dropout)} == {DROPOUT}
    assert not hasattr(config, "num_hidden_layers") and not hasattr(config, "hidden_dropout_prob")


def test_an_encoder_saved_under_berts_names_loads(tmp_path):
    """config.json files written before the rename (num_hidden_layers, num_attention_heads, two dropouts) load."""
    from avvp.pretrain.modeling import AVEncoderConfig

    old = {"model_type": "avvp_av_encoder", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 48, "hidden_dropout_prob": 0.2, "attention_probs_dropout_prob": 0.2}  # fmt: skip
    config = AVEncoderConfig.from_dict(old)
    assert (config.num_layers, config.num_heads, config.dropout) == (2, 4, 0.2)
    assert "num_hidden_layers" not in config.to_dict() and config.to_dict()["num_layers"] == 2
    with pytest.raises(ValueError, match="differ"):
        AVEncoderConfig.from_dict({**old, "attention_probs_dropout_prob": 0.1})


def test_resolve_settings_layers_preset_recipe_and_given_values():
    preset, recipe = {"epochs": 2, "hidden_size": 64}, {"epochs": 40, "lr": 1e-6}
    given = {"lr": 1e-3, "seed": None}  # None: not given
    assert resolve_settings(preset, recipe, given) == {"epochs": 40, "hidden_size": 64, "lr": 1e-3}


def finetune_model_for(recipe: str) -> str:
    return "han" if recipe == "han" else "base"


@pytest.mark.parametrize(
    "stage, presets, recipes",
    [("finetune", FINETUNE_PRESETS, FINETUNE_RECIPES), ("pretrain", PRETRAIN_PRESETS, PRETRAIN_RECIPES)],
)
def test_one_precedence_in_both_stages(stage, presets, recipes):
    """Defaults < preset < recipe < explicit values, for every preset and recipe of both stages."""
    for preset, preset_values in presets.items():
        for recipe, recipe_values in recipes.items():
            if stage == "finetune":
                cfg = FinetuneConfig.from_preset(preset, recipe, model=finetune_model_for(recipe))
                given = FinetuneConfig.from_preset(preset, recipe, model=finetune_model_for(recipe), epochs=7)
            else:
                cfg = PretrainConfig.from_preset(preset, recipe)
                given = PretrainConfig.from_preset(preset, recipe, epochs=7)
            own_sizes = ARCHITECTURE_SIZES.get((getattr(cfg, "architecture", ""), preset), {})
            for name, value in {**preset_values, **recipe_values}.items():
                expected = own_sizes.get(name, recipe_values.get(name, value))
                assert getattr(cfg, name) == expected, (stage, preset, recipe, name)
            assert given.epochs == 7


def test_the_release_recipe_sets_its_schedule_over_every_pretraining_preset():
    for preset in PRETRAIN_PRESETS:
        cfg = PretrainConfig.from_preset(preset, "release")
        assert (cfg.batch_size, cfg.epochs, cfg.lr) == (16, 40, 1e-6)
    assert PretrainConfig.from_preset("paper", "release", batch_size=8).batch_size == 8


@pytest.mark.parametrize("app", [finetune_app, pretrain_app], ids=["avvp-finetune", "avvp-pretrain"])
def test_both_helps_state_the_precedence(app):
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200", "TERM": "dumb"})
    assert result.exit_code == 0
    shown = " ".join(result.output.replace("│", " ").split())
    assert " ".join(PRECEDENCE.split()) in shown


def test_a_finetuning_run_saved_with_berts_encoder_names_reads_as_one_saved_now(tmp_path):
    """An end-to-end run's frontend_config under the old names compares equal to today's (so --resume accepts it)."""
    now = {"model_type": "avvp_av_encoder", "hidden_size": 32, "num_layers": 2, "num_heads": 4, "dropout": 0.2}
    old = {"model_type": "avvp_av_encoder", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "hidden_dropout_prob": 0.2, "attention_probs_dropout_prob": 0.2}  # fmt: skip
    saved = FinetuneConfig(model="mmil", frontend="enc", frontend_config=old)
    assert saved.frontend_config == FinetuneConfig(model="mmil", frontend="enc", frontend_config=now).frontend_config
