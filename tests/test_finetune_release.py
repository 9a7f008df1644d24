"""The Base family equals the paper release's forward pass; its recipes; `avvp-finetune import-release`.

The oracle below is written from the release's formulas (Lamba et al., `nets/net_audiovisual*.py`) with its
key names, independently of avvp.finetune.models: plain attention is `nn.MultiheadAttention`'s packed in-projection,
GCAA gates projected global contexts into q and k, and the release's GCAA layers add `[0]` of the (T, B, D)
output (snippet 0's vector) to every snippet. The visual stream is given to the oracle as 80 frames (projected,
then averaged per second, as the release does) and to our model as the 10 per-second means.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_line_error, run_cli

from avvp.errors import ConfigError
from avvp.finetune.cli import main as finetune_main
from avvp.finetune.config import RECIPES, FinetuneConfig
from avvp.finetune.evaluate import load_run
from avvp.finetune.import_release_weights import RELEASE_ROWS, convert_release
from avvp.finetune.models import REGISTRY, ParserSizes, build_parser

D, FF = 512, 512
WIDTHS = {"audio": 128, "visual": 2048, "motion": 512}

SIZES_16 = ParserSizes(hidden_size=16, num_heads=1, intermediate_size=16, dropout=0.1)
"""A small parser of the default heads and dropout."""


def run_finetune(*args) -> tuple[int, str, str]:
    """`avvp-finetune ARGS` in this process: (exit status, stdout, stderr)."""
    return run_cli(finetune_main, *args)


def _release_state(gcaa: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the release's key names and shapes, random values (every net saves every key)."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def linear(name: str, n_in: int, n_out: int) -> None:
        state[f"{name}.weight"] = torch.randn(n_out, n_in, generator=generator) / math.sqrt(n_in)
        state[f"{name}.bias"] = 0.1 * torch.randn(n_out, generator=generator)

    def norm(name: str, width: int, batch: bool = False) -> None:
        state[f"{name}.weight"] = 1 + 0.1 * torch.randn(width, generator=generator)
        state[f"{name}.bias"] = 0.1 * torch.randn(width, generator=generator)
        if batch:
            state[f"{name}.running_mean"] = 0.1 * torch.randn(width, generator=generator)
            state[f"{name}.running_var"] = 0.5 + torch.rand(width, generator=generator)
            state[f"{name}.num_batches_tracked"] = torch.tensor(7)

    for name, (n_in, n_out) in {
        "shared_fc": (D, D), "fc_prob": (D, 25), "fc_frame_att": (D, 25), "fc_av_att": (D, 25),
        "fc_a": (128, D), "fc_v": (2048, D), "fc_st": (512, D), "fc_fusion": (2 * D, D),
    }.items():  # fmt: skip
        linear(name, n_in, n_out)
    for layer, attention in (
        ("sa_layer_a", "self_attn"),
        ("sa_layer_v", "self_attn"),
        ("cma_layer.layers.0", "cm_attn"),
    ):
        prefix = f"{layer}.{attention}"
        if gcaa:
            for part in ("qx_linear", "kx_linear", "vx_linear", "qc_linear", "kc_linear", "out"):
                linear(f"{prefix}.{part}", D, D)
            for part in ("Vqx_linear", "Vqc_linear", "Vkx_linear", "Vkc_linear"):
                linear(f"{prefix}.{part}", D, 1)
        else:
            state[f"{prefix}.in_proj_weight"] = torch.randn(3 * D, D, generator=generator) / math.sqrt(D)
            state[f"{prefix}.in_proj_bias"] = 0.1 * torch.randn(3 * D, generator=generator)
            linear(f"{prefix}.out_proj", D, D)
        linear(f"{layer}.linear1", D, FF)
        linear(f"{layer}.linear2", FF, D)
        norm(f"{layer}.norm1", D)
        norm(f"{layer}.norm2", D)
    for name in ("cma_layer.norm1", "cma_layer.norm2", "norm_a", "norm_v"):
        norm(name, D)
    linear("mod_classifier.fc1", D, 128)
    norm("mod_classifier.norm1", 128, batch=True)
    linear("mod_classifier.fc2", 128, 10)
    norm("mod_classifier.norm2", 10, batch=True)
    linear("mod_classifier.fc3", 10, 1)
    return state


def _release_forward(s, audio, visual_frames, motion, gcaa: bool, skip: bool):
    """The release's MMIL_Net.forward in eval mode: (global_prob, a_prob, v_prob, frame_prob, mod_pred)."""

    def linear(name, x):
        return x @ s[f"{name}.weight"].T + s[f"{name}.bias"]

    def layer_norm(name, x):
        return F.layer_norm(x, x.shape[-1:], s[f"{name}.weight"], s[f"{name}.bias"], eps=1e-5)

    def attend(q, k, v):  # one head
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v

    def multihead(name, query, keys):
        w, b = s[f"{name}.in_proj_weight"], s[f"{name}.in_proj_bias"]
        q, k, v = (x @ w[i * D : (i + 1) * D].T + b[i * D : (i + 1) * D] for i, x in enumerate((query, keys, keys)))
        return linear(f"{name}.out_proj", attend(q, k, v))

    def global_context(name, query, keys):
        qx, kx, v = (
            linear(f"{name}.qx_linear", query),
            linear(f"{name}.kx_linear", keys),
            linear(f"{name}.vx_linear", keys),
        )
        qc = linear(f"{name}.qc_linear", query.mean(1, keepdim=True).expand_as(query))
        kc = linear(f"{name}.kc_linear", keys.mean(1, keepdim=True).expand_as(keys))
        lambda_q = torch.sigmoid(linear(f"{name}.Vqx_linear", qx) + linear(f"{name}.Vqc_linear", qc))
        lambda_k = torch.sigmoid(linear(f"{name}.Vkx_linear", kx) + linear(f"{name}.Vkc_linear", kc))
        out = linear(f"{name}.out", attend((1 - lambda_q) * qx + lambda_q * qc, (1 - lambda_k) * kx + lambda_k * kc, v))
        return out[:, :1]  # `[0]` of the (T, B, D) output: snippet 0, broadcast over the snippets by the residual

    def transformer_layer(name, attention, x, other):
        attended = (global_context if gcaa else multihead)(f"{name}.{attention}", x, other)
        x = layer_norm(f"{name}.norm1", x + attended)
        return layer_norm(f"{name}.norm2", x + linear(f"{name}.linear2", F.relu(linear(f"{name}.linear1", x))))

    x1 = linear("fc_a", audio)
    frames = linear("fc_v", visual_frames)  # (B, 80, D)
    vid_s = frames.unflatten(1, (10, 8)).mean(2)  # avg_pool2d over each second's 8 frames
    x2 = linear("fc_fusion", torch.cat([vid_s, linear("fc_st", motion)], dim=-1))
    x1 = transformer_layer("sa_layer_a", "self_attn", x1, x1)
    x2 = transformer_layer("sa_layer_v", "self_attn", x2, x2)
    a_mm = transformer_layer("cma_layer.layers.0", "cm_attn", x1, x2)
    v_mm = transformer_layer("cma_layer.layers.0", "cm_attn", x2, x1)
    x = linear("shared_fc", torch.stack([a_mm, v_mm], dim=-2))
    if skip:
        x = torch.stack([layer_norm("norm_a", x[:, :, 0] + x1), layer_norm("norm_v", x[:, :, 1] + x2)], dim=-2)
    feat = F.relu(x).reshape(-1, D)
    for fc, bn in (("fc1", "norm1"), ("fc2", "norm2")):
        feat = linear(f"mod_classifier.{fc}", feat)
        bn = f"mod_classifier.{bn}"
        feat = F.batch_norm(feat, s[f"{bn}.running_mean"], s[f"{bn}.running_var"], s[f"{bn}.weight"], s[f"{bn}.bias"])
        feat = F.relu(feat)
    mod_pred = torch.sigmoid(linear("mod_classifier.fc3", feat)).squeeze(-1)
    frame_prob = torch.sigmoid(linear("fc_prob", x))
    frame_att = torch.softmax(linear("fc_frame_att", x), dim=1)
    av_att = torch.softmax(linear("fc_av_att", x), dim=2)
    temporal_prob = frame_att * frame_prob
    global_prob = (temporal_prob * av_att).sum(dim=2).sum(dim=1)
    return global_prob, temporal_prob[:, :, 0].sum(1), temporal_prob[:, :, 1].sum(1), frame_prob, mod_pred


def _inputs(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    audio = torch.randn(3, 10, 128, generator=generator)
    frames = torch.randn(3, 80, 2048, generator=generator)
    motion = torch.randn(3, 10, 512, generator=generator)
    return audio, frames, motion


@pytest.mark.parametrize("model", list(RELEASE_ROWS))
def test_imported_release_net_gives_the_release_forward_pass(model, tmp_path):
    spec = REGISTRY[model]
    state = _release_state(spec["gcaa"])
    checkpoint = tmp_path / "MMIL_Net.pt"
    torch.save(state, checkpoint)
    assert run_finetune("import-release", checkpoint, "--model", model, "--out", tmp_path / "run")[0] == 0
    cfg, ours = load_run(tmp_path / "run")
    assert cfg.recipe == "release" and cfg.gcaa_first_snippet and cfg.adv_on_every_row and cfg.model == model
    audio, frames, motion = _inputs()
    with torch.no_grad():
        expected = _release_forward(state, audio, frames, motion, spec["gcaa"], spec["skip"])
        visual = frames.unflatten(1, (10, 8)).mean(2)  # the store's per-second means
        output = ours.eval()({"audio": audio, "visual": visual, "motion": motion})
    got = (output.video_prob, output.audio_prob, output.visual_prob, output.snippet_prob)
    for name, ours_value, release_value in zip(("global", "audio", "visual", "frame"), got, expected, strict=False):
        assert ours_value.shape == release_value.shape, name
        assert torch.allclose(ours_value, release_value, atol=1e-5), name
    assert torch.allclose(torch.sigmoid(output.modality_logits).reshape(-1), expected[4], atol=1e-5)


def test_first_snippet_switch_changes_only_gcaa_rows():
    features = {name: torch.randn(2, 10, width) for name, width in {"audio": 12, "visual": 20, "motion": 8}.items()}
    sizes = ParserSizes(hidden_size=16, num_heads=2, intermediate_size=24, dropout=0.0)
    for name in ("base", "base-adv-skip", "base-gcaa", "base-adv-skip-gcaa"):
        outputs = []
        for first in (False, True):
            torch.manual_seed(0)
            parser = build_parser(name, {"audio": 12, "visual": 20, "motion": 8}, sizes, gcaa_first_snippet=first)
            with torch.no_grad():
                outputs.append(parser.eval()(features).snippet_prob)
        same = torch.equal(*outputs)
        assert same != REGISTRY[name]["gcaa"], name


def test_discriminator_on_every_row_only_under_the_release_switch():
    widths = {"audio": 12, "visual": 20, "motion": 8}
    plain = build_parser("base-gcaa", widths, SIZES_16)
    release = build_parser("base-gcaa", widths, SIZES_16, adv_on_every_row=True)
    assert plain.discriminator is None and release.discriminator is not None
    out = release.train()({name: torch.randn(4, 10, w) for name, w in widths.items()}, adv_strength=0.3)
    assert out.modality_logits.shape == (4, 10, 2)
    assert (
        build_parser("han", widths, SIZES_16, adv_on_every_row=True)(
            {name: torch.randn(2, 10, w) for name, w in widths.items()}
        ).modality_logits
        is None
    )


def test_recipes_set_their_values_and_config_json_records_them(tmp_path):
    release = FinetuneConfig.from_preset("paper", "release", model="base-gcaa", out=str(tmp_path / "r"))
    assert (release.recipe, release.lr, release.lr_step, release.lr_gamma) == ("release", 6e-4, 6, 0.5)
    assert (release.lambda_guided, release.lambda_adv, release.epochs, release.batch_size) == (0.3, 0.3, 40, 64)
    assert release.gcaa_first_snippet and release.adv_on_every_row and release.select_ties_later
    assert release.reversal_epoch_offset == 1
    paper = FinetuneConfig.from_preset(model="base-gcaa")
    assert (paper.recipe, paper.lr, paper.lr_step, paper.lambda_guided, paper.lambda_adv) == (
        "paper",
        3e-4,
        5,
        0.6,
        0.4,
    )
    assert not (paper.gcaa_first_snippet or paper.adv_on_every_row or paper.select_ties_later)
    han = FinetuneConfig.from_preset(model="han")
    assert (han.recipe, han.batch_size, han.lr_step, han.lr_gamma, han.select_ties_later) == ("han", 16, 10, 0.1, True)
    release.save(tmp_path / "config.json")
    assert FinetuneConfig.load(tmp_path / "config.json") == release
    demo = FinetuneConfig.from_preset("demo", "release", model="base")
    assert (demo.lr, demo.epochs, demo.batch_size) == (RECIPES["release"]["lr"], 20, 16)  # the preset's schedule


def test_release_recipe_trains_from_the_cli(tiny_llp, tmp_path):
    code, _, _ = run_finetune(
        "--model", "base-gcaa", "--recipe", "release", "--features", tiny_llp / "llp.h5",
        "--annotations", tiny_llp, "--out", tmp_path / "run", "--preset", "tiny", "--epochs", "1", "--quiet",
    )  # fmt: skip
    assert code == 0
    cfg = FinetuneConfig.load(tmp_path / "run" / "config.json")
    assert cfg.recipe == "release" and cfg.lambda_adv == 0.3 and cfg.adv_on_every_row
    metrics = (tmp_path / "run" / "metrics.json").read_text()
    assert '"adv"' in metrics  # the discriminator term was trained on Base+GCAA


def test_unknown_recipe_and_han_with_another_recipe_are_one_line_errors(tiny_llp, tmp_path):
    common = ["--features", tiny_llp / "llp.h5", "--annotations", tiny_llp, "--out", tmp_path / "run"]
    result = run_finetune("--model", "base", "--recipe", "relase", *common)
    assert_one_line_error(result, "unknown recipe 'relase'", "paper, release, han")
    assert_one_line_error(run_finetune("--model", "han", "--recipe", "release", *common), "HAN's own recipe")
    assert not (tmp_path / "run").exists()


def test_import_release_of_another_row_or_of_han_is_a_one_line_error(tmp_path):
    checkpoint = tmp_path / "gcaa.pt"
    torch.save(_release_state(gcaa=True), checkpoint)
    result = run_finetune("import-release", checkpoint, "--model", "base", "--out", tmp_path / "a")
    assert_one_line_error(result, "global-context-aware attention", "not of --model base")
    han = tmp_path / "han.pt"
    torch.save({"hat_encoder.layers.0.linear1.weight": torch.zeros(2, 2), "fc_a.weight": torch.zeros(2, 2)}, han)
    result = run_finetune("import-release", han, "--model", "base-adv-skip", "--out", tmp_path / "b")
    assert_one_line_error(result, "HAN checkpoint", "import-han")
    result = run_finetune("import-release", checkpoint, "--model", "han", "--out", tmp_path / "c")
    assert_one_line_error(result, "Base family", "import-han")
    broken = _release_state(gcaa=False)
    del broken["shared_fc.weight"]
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError, match=r"missing \(1\): shared_fc.weight; unexpected \(1\): extra.weight"):
        convert_release(broken, "base")
    assert not any((tmp_path / name).exists() for name in "abc")
