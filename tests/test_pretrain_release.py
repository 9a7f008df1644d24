"""The paper release's UNITER and its end-to-end `avg` model: our `release` architecture and `release-avg` against
the release's formulas computed here (state dicts built with its key names and shapes), its recipe's hidden motion
and continued optimizer, the imports of `pretrained.pt` and `final.pt`, and their bad inputs.

The oracle (`release_forward`) follows model/model.py and model/layer.py of jayaprakash-a/Cross-Modal-learning-for-
Audio-Visual-Video-Parsing as formulas: per stream LayerNorm(LayerNorm(Linear(x + mask_embedding[1])) +
position_embeddings[t] + token_type[type]) (RGB type 0, audio and R(2+1)D type 1; order RGB, audio, R(2+1)D), BERT
layers (post-norm, erf GELU, additive mask (1 - m) * -10000), then `avg`'s `avvp` branch.
"""

import json
import math
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from accelerate.state import AcceleratorState
from conftest import assert_one_line_error, run_cli
from safetensors.torch import load_file

from avvp.finetune.cli import main as finetune_main
from avvp.finetune.import_release_weights import release_avg_model
from avvp.pretrain import load_encoder, release_encoder
from avvp.pretrain.cli import main as pretrain_main
from avvp.store import read_store, write_store

RGB, AUDIO, R2P1D = 2048, 128, 512
EMBEDDINGS = {"rgb_embeddings": ("img", RGB), "audio_embeddings": ("audio", AUDIO), "r2p1d_embeddings": ("img", R2P1D)}
HEAD = {"fc_a": (512, None), "fc_v": (512, None), "fc_st": (512, None), "fc_fusion": (512, 1024), "fc_prob": (25, 512),
        "fc_frame_att": (25, 512), "fc_av_att": (25, 512)}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread_fresh_accelerate_state")


def release_state(hidden: int, layers: int, intermediate: int, head: str | None = "trained", seed: int = 0) -> dict:
    """A state dict with the release's key names and shapes: `avg` (uniter.* + head), or `UniterModel` alone
    (head None). `head`: "trained" (weights beyond PyTorch's initial bound, as after finetuning) or "untrained"
    (within it, as in pretrained.pt). Every tensor random, the unused ones (fc_v, pos_layer_norm, pooler,
    mask_embedding row 0) included."""
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape, std=0.02, mean=0.0):  # BERT's initial scale, so activations stay in float32's comfort
        return mean + std * torch.randn(*shape, generator=generator)

    state = {}

    def linear(name, out_features, in_features):
        state[f"{name}.weight"], state[f"{name}.bias"] = normal(out_features, in_features), normal(out_features)

    def norm(name, width):
        state[f"{name}.weight"], state[f"{name}.bias"] = normal(width, std=0.2, mean=1.0), normal(width, std=0.2)

    for module, (prefix, width) in EMBEDDINGS.items():
        name = f"uniter.{module}"
        if module != "audio_embeddings":
            linear(f"{name}.fc_v", width, width)
        linear(f"{name}.{prefix}_linear", hidden, width)
        norm(f"{name}.{prefix}_layer_norm", hidden)
        norm(f"{name}.pos_layer_norm", hidden)
        state[f"{name}.mask_embedding.weight"] = normal(2, width, std=0.3)
        state[f"{name}.position_embeddings.weight"] = normal(10, hidden, std=0.3)
        norm(f"{name}.LayerNorm", hidden)
    state["uniter.token_type_embeddings.weight"] = normal(2, hidden, std=0.3)
    for index in range(layers):
        name = f"uniter.encoder.layer.{index}"
        for part in ("query", "key", "value"):
            linear(f"{name}.attention.self.{part}", hidden, hidden)
        linear(f"{name}.attention.output.dense", hidden, hidden)
        norm(f"{name}.attention.output.LayerNorm", hidden)
        linear(f"{name}.intermediate.dense", intermediate, hidden)
        linear(f"{name}.output.dense", hidden, intermediate)
        norm(f"{name}.output.LayerNorm", hidden)
    linear("uniter.pooler.dense", hidden, hidden)
    if head is None:
        return {key.removeprefix("uniter."): value for key, value in state.items()}
    for name, (out_features, in_features) in HEAD.items():
        in_features = in_features or hidden
        bound = 1 / math.sqrt(in_features)
        # PyTorch's nn.Linear initialisation; "trained" moves every weight by N(0, bound / 2), past the bound
        state[f"{name}.weight"] = (torch.rand(out_features, in_features, generator=generator) * 2 - 1) * bound
        state[f"{name}.bias"] = (torch.rand(out_features, generator=generator) * 2 - 1) * bound
        if head == "trained":
            state[f"{name}.weight"] += normal(out_features, in_features, std=bound / 2)
            state[f"{name}.bias"] += normal(out_features, std=bound / 2)
    return state


def layer_norm(x, state, name):
    return F.layer_norm(x, (x.shape[-1],), state[f"{name}.weight"], state[f"{name}.bias"], eps=1e-12)


def dense(x, state, name):
    return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]


def release_embeddings(state, rgb, audio, r2p1d) -> dict[str, torch.Tensor]:
    """The release's embedding of each stream, (B, 10, H) each, from a `uniter.*` state dict."""
    out = {}
    for module, feature, token_type in (("rgb_embeddings", rgb, 0), ("audio_embeddings", audio, 1),
                                         ("r2p1d_embeddings", r2p1d, 1)):  # fmt: skip
        name, prefix = f"uniter.{module}", EMBEDDINGS[module][0]
        projected = layer_norm(
            dense(feature + state[f"{name}.mask_embedding.weight"][1], state, f"{name}.{prefix}_linear"),
            state,
            f"{name}.{prefix}_layer_norm",
        )
        summed = (projected + state[f"{name}.position_embeddings.weight"][torch.arange(10)]
                  + state["uniter.token_type_embeddings.weight"][token_type])  # fmt: skip
        out[module] = layer_norm(summed, state, f"{name}.LayerNorm")
    return out


def release_forward(state, rgb, audio, r2p1d, heads, attention_mask=None) -> dict[str, torch.Tensor]:
    """The release's embeddings, encoded tokens and (with the head) the four outputs of `avg`'s `avvp` branch."""
    embedded = release_embeddings(state, rgb, audio, r2p1d)
    x = torch.cat([embedded["rgb_embeddings"], embedded["audio_embeddings"], embedded["r2p1d_embeddings"]], dim=1)
    batch, tokens, hidden = x.shape
    mask = torch.ones(batch, tokens) if attention_mask is None else attention_mask
    additive = (1.0 - mask)[:, None, None, :] * -10000.0  # (B, 1, 1, 30)
    size = hidden // heads
    layers = 1 + max(int(key.split(".")[3]) for key in state if key.startswith("uniter.encoder.layer."))
    for index in range(layers):
        name = f"uniter.encoder.layer.{index}"

        def split_heads(t):
            return t.view(batch, tokens, heads, size).permute(0, 2, 1, 3)  # (B, heads, 30, d)

        q, k, v = (split_heads(dense(x, state, f"{name}.attention.self.{p}")) for p in ("query", "key", "value"))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(size) + additive, dim=-1)
        context = (probs @ v).permute(0, 2, 1, 3).reshape(batch, tokens, hidden)
        attended = layer_norm(dense(context, state, f"{name}.attention.output.dense") + x, state,
                              f"{name}.attention.output.LayerNorm")  # fmt: skip
        inner = dense(attended, state, f"{name}.intermediate.dense")
        inner = inner * 0.5 * (1.0 + torch.erf(inner / math.sqrt(2.0)))
        x = layer_norm(dense(inner, state, f"{name}.output.dense") + attended, state, f"{name}.output.LayerNorm")
    out = {**embedded, "rgb": x[:, :10], "audio": x[:, 10:20], "r2p1d": x[:, 20:]}
    if "fc_a.weight" not in state:
        return out
    x1 = dense(out["audio"], state, "fc_a")
    x2 = dense(torch.cat([dense(out["rgb"], state, "fc_v"), dense(out["r2p1d"], state, "fc_st")], -1), state,
               "fc_fusion")  # fmt: skip
    both = torch.stack([x1, x2], dim=-2)  # (B, 10, 2, 512)
    frame_prob = torch.sigmoid(dense(both, state, "fc_prob"))
    temporal = torch.softmax(dense(both, state, "fc_frame_att"), dim=1) * frame_prob
    av_att = torch.softmax(dense(both, state, "fc_av_att"), dim=2)
    out.update(global_prob=(temporal * av_att).sum(dim=2).sum(dim=1), a_prob=temporal[:, :, 0].sum(dim=1),
               v_prob=temporal[:, :, 1].sum(dim=1), frame_prob=frame_prob)  # fmt: skip
    return out


def random_features(batch=3, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 10, width, generator=generator) for width in (RGB, AUDIO, R2P1D)]


def close(actual, expected, what):
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5, msg=lambda m: f"{what}: {m}")


def check_encoder(encoder, state, rgb, audio, r2p1d, heads):
    """Our encoder's embeddings per token and outputs against the release's (all tokens attended, and with the
    R(2+1)D tokens masked out as in its pretraining)."""
    expected = release_forward(state, rgb, audio, r2p1d, heads)
    types = encoder.token_type_embeddings.weight
    with torch.no_grad():
        for module, ours, feature, token_type in (("rgb_embeddings", "visual", rgb, 0),
                                                  ("audio_embeddings", "audio", audio, 1),
                                                  ("r2p1d_embeddings", "motion", r2p1d, 1)):  # fmt: skip
            close(encoder.stream_embeddings[ours](feature, types[token_type]), expected[module], module)
        output = encoder(audio, rgb, r2p1d)
        for ours, release in (("visual", "rgb"), ("audio", "audio"), ("motion", "r2p1d")):
            close(getattr(output, ours), expected[release], f"encoded {ours}")
        masked = torch.ones(len(rgb), 30)
        masked[:, 20:] = 0
        expected = release_forward(state, rgb, audio, r2p1d, heads, masked)
        output = encoder(audio, rgb, r2p1d, motion_attended=False)
        for ours, release in (("visual", "rgb"), ("audio", "audio"), ("motion", "r2p1d")):
            close(getattr(output, ours), expected[release], f"encoded {ours}, motion masked")
    return output


@pytest.mark.parametrize("part", ["avg", "uniter"])
def test_release_encoder_computes_the_release_uniter(part):
    state = release_state(64, 2, 96, head="untrained" if part == "avg" else None)
    encoder = release_encoder(state, heads=4, source="test")
    assert encoder.config.architecture == "release" and encoder.config.num_layers == 2
    full = state if part == "avg" else {f"uniter.{key}": value for key, value in state.items()}
    check_encoder(encoder, full, *random_features(), heads=4)


@pytest.mark.parametrize("architecture", ["toolkit", "release"])
def test_both_architectures_train_every_parameter_and_can_hide_motion(architecture):
    from avvp.pretrain.modeling import AVEncoderConfig, AVEncoderModel

    torch.manual_seed(0)
    config = AVEncoderConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                             architecture=architecture)  # fmt: skip
    encoder = AVEncoderModel(config)
    rgb, audio, r2p1d = random_features(batch=2)
    output = encoder(audio, rgb, r2p1d)
    assert all(t.shape == (2, 10, 32) and torch.isfinite(t).all() for t in output)
    sum(t.sum() for t in output).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
    encoder.eval()
    with torch.no_grad():
        hidden = encoder(audio, rgb, r2p1d, motion_attended=False)
        other = encoder(audio, rgb, r2p1d * 5 + 1, motion_attended=False)
        shown = encoder(audio, rgb, r2p1d * 5 + 1)
    assert torch.equal(hidden.audio, other.audio) and torch.equal(hidden.visual, other.visual)
    assert not torch.allclose(hidden.audio, shown.audio)


def test_release_avg_at_the_release_size_gives_its_four_outputs():
    """hidden 1024, 12 layers, 8 heads, intermediate 3072: embeddings per token and the four `avvp` outputs."""
    state = release_state(1024, 12, 3072, head="trained", seed=3)
    cfg, model, _ = release_avg_model(state, heads=8, source="final.pt")
    assert (cfg.model, cfg.hidden_size, cfg.frontend_config["hidden_size"]) == ("release-avg", 512, 1024)
    rgb, audio, r2p1d = random_features(batch=2, seed=4)
    check_encoder(model.frontend.encoder, state, rgb, audio, r2p1d, heads=8)
    expected = release_forward(state, rgb, audio, r2p1d, heads=8)
    with torch.no_grad():
        output = model({"audio": audio, "visual": rgb, "motion": r2p1d})
    close(output.video_prob, expected["global_prob"], "global_prob")
    close(output.audio_prob, expected["a_prob"], "a_prob")
    close(output.visual_prob, expected["v_prob"], "v_prob")
    close(output.snippet_prob, expected["frame_prob"], "frame_prob")


def write_llp_like_store(path, video_ids, seed=0):
    rng = np.random.default_rng(seed)
    streams = {name: rng.normal(size=(len(video_ids), 10, width)).astype(np.float32)
               for name, width in (("audio", AUDIO), ("visual", RGB), ("motion", R2P1D))}  # fmt: skip
    return write_store(path, video_ids, streams, dtype="float32", source="test")


def test_imports_and_parse_probabilities_give_the_release_forward(tmp_path, run_avvp):
    final, pretrained = tmp_path / "final.pt", tmp_path / "pretrained.pt"
    state = release_state(32, 2, 48, head="trained", seed=5)
    torch.save(state, final)
    torch.save(release_state(32, 2, 48, head="untrained", seed=6), pretrained)
    run = tmp_path / "run"
    code, stdout, stderr = run_cli(finetune_main, "import-release", final, "--model", "release-avg", "--out", run,
                                   "--encoder-heads", 4)  # fmt: skip
    assert code == 0, stderr
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"] == "release-avg" and saved["frontend_config"]["architecture"] == "release"

    video_ids = [f"vid{i:08d}abc" for i in range(5)]
    store = write_llp_like_store(tmp_path / "llp.h5", video_ids)
    probabilities = tmp_path / "probs.h5"
    code, _, stderr = run_avvp("parse", "--run", run, "--features", store, "--videos", ",".join(video_ids),
                               "--out", tmp_path / "events.json", "--probabilities", probabilities)  # fmt: skip
    assert code == 0, stderr
    features = read_store(store, streams=("audio", "visual", "motion"), dtype="float32")
    expected = release_forward(state, *(torch.from_numpy(features[n]) for n in ("visual", "audio", "motion")), 4)
    with h5py.File(probabilities, "r") as handle:
        for ours, release in (("video", "global_prob"), ("audio", "a_prob"), ("visual", "v_prob"),
                              ("snippet", "frame_prob")):  # fmt: skip
            np.testing.assert_allclose(handle[ours][()], expected[release].numpy(), rtol=0, atol=1e-5, err_msg=ours)

    encoder_dir = tmp_path / "encoder"
    code, _, stderr = run_cli(pretrain_main, "import-release", pretrained, "--out", encoder_dir, "--heads", 4)
    assert code == 0, stderr
    encoder = load_encoder(encoder_dir)
    assert encoder.config.architecture == "release"
    check_encoder(encoder, torch.load(pretrained, weights_only=True), *random_features(2, seed=7), heads=4)


def test_bad_release_checkpoints_are_one_line_errors(tmp_path):
    final, pretrained, parser = tmp_path / "final.pt", tmp_path / "pretrained.pt", tmp_path / "MMIL_Net.pt"
    torch.save(release_state(32, 1, 48, head="trained"), final)
    torch.save(release_state(32, 1, 48, head="untrained"), pretrained)
    torch.save({"sa_layer_a.self_attn.in_proj_weight": torch.zeros(12, 4), "fc_a.weight": torch.zeros(4, 128)}, parser)
    out = tmp_path / "out"

    def finetune_import(path, model="release-avg"):
        return run_cli(finetune_main, "import-release", path, "--model", model, "--out", out)

    def pretrain_import(path):
        return run_cli(pretrain_main, "import-release", path, "--out", out)

    assert_one_line_error(finetune_import(pretrained), str(pretrained), "never trained", "avvp-pretrain import-release")
    assert_one_line_error(pretrain_import(final), str(final), "was trained", "--model release-avg")
    assert_one_line_error(pretrain_import(parser), str(parser), "parser checkpoint", "avvp-finetune import-release")
    assert_one_line_error(finetune_import(final, "base"), str(final), "--model release-avg")
    assert_one_line_error(finetune_import(parser), str(parser), "parser checkpoint")
    wrong = release_state(32, 2, 48, head="untrained")
    wrong["uniter.encoder.layer.1.attention.self.query.weight"] = torch.zeros(32, 16)
    torch.save(wrong, tmp_path / "wrong.pt")
    assert_one_line_error(pretrain_import(tmp_path / "wrong.pt"), "encoder.layer.1.attention.self.query.weight")
    assert not out.exists()


@pytest.fixture(scope="module")
def release_pretraining(tiny_llp, tmp_path_factory):
    """Grounding labels of LLP-sim tiny's corpus and a copy of it with other motion features."""
    from avvp.grounding.build import GroundingConfig, build

    folder = tmp_path_factory.mktemp("release_pretraining")
    labels = folder / "avg.h5"
    build(GroundingConfig(features=tiny_llp / "pretrain.h5", out=labels))
    corpus = read_store(tiny_llp / "pretrain.h5", dtype="float32")
    other = {name: corpus[name] for name in ("audio", "visual")} | {"motion": corpus["motion"][::-1] * 3 + 1}
    other_motion = write_store(folder / "other-motion.h5", list(corpus.video_ids), other, dtype="float32", source="t")
    return tiny_llp / "pretrain.h5", other_motion, labels


def pretrain(features, labels, out, *extra):
    args = ["--preset", "tiny", "--recipe", "release", "--epochs", 2, "--batch-size", 8, "--lr", 1e-3,
            "--features", features, "--labels", labels, "--out", out, *extra]  # fmt: skip
    code, _, stderr = run_cli(pretrain_main, *args)
    AcceleratorState._reset_state(reset_partial_state=True)
    assert code == 0, stderr
    return out


def test_release_recipe_pretrains_the_release_architecture_with_motion_hidden(release_pretraining, tmp_path):
    corpus, other_motion, labels = release_pretraining
    first = pretrain(corpus, labels, tmp_path / "first")
    config = json.loads((first / "config.json").read_text())
    assert config["architecture"] == "release"
    recorded = json.loads((first / "pretrain_config.json").read_text())
    assert recorded["hide_motion"] is True and recorded["architecture"] == "release"
    weights = load_file(first / "model.safetensors")
    # The motion tokens are zeroed and masked out: other motion features train the same encoder, bit for bit.
    second = load_file(pretrain(other_motion, labels, tmp_path / "second") / "model.safetensors")
    assert weights.keys() == second.keys() and all(torch.equal(weights[k], second[k]) for k in weights)
    # ... and it did train: every weight moved from the untrained control's but the frozen position tables and the
    # motion embedding, whose tokens nothing reads (as in the release, where they keep their initial values).
    code, _, stderr = run_cli(pretrain_main, "init", "--preset", "tiny", "--recipe", "release", "--features", corpus,
                              "--out", tmp_path / "control")  # fmt: skip
    assert code == 0, stderr
    start = load_file(tmp_path / "control" / "model.safetensors")
    unchanged = sorted(key for key in weights if torch.equal(start[key], weights[key]))
    motion = {key for key in weights if key.startswith("stream_embeddings.motion.")}
    assert set(unchanged) == motion | {f"stream_embeddings.{name}.positions" for name in ("audio", "visual")}
    # Without hiding them the motion features change the result.
    shown = pretrain(other_motion, labels, tmp_path / "shown", "--no-hide-motion")
    assert not torch.equal(load_file(shown / "model.safetensors")["stream_embeddings.audio.linear.weight"],
                           weights["stream_embeddings.audio.linear.weight"])  # fmt: skip


def test_release_e2e_continues_the_pretraining_optimizer(release_pretraining, tiny_llp, tmp_path):
    corpus, _, labels = release_pretraining
    encoder = pretrain(corpus, labels, tmp_path / "encoder")
    control = tmp_path / "control"
    code, _, stderr = run_cli(pretrain_main, "init", "--preset", "tiny", "--recipe", "release", "--features", corpus,
                              "--out", control)  # fmt: skip
    assert code == 0, stderr
    steps = json.loads((encoder / "metrics.json").read_text())["steps"]

    def finetune(encoder_dir, out):
        args = ["--e2e", "--encoder", encoder_dir, "--recipe", "release", "--preset", "tiny", "--epochs", 1,
                "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp, "--out", out, "--quiet",
                "--keep-checkpoints"]  # fmt: skip
        code, stdout, stderr = run_cli(finetune_main, *args)
        AcceleratorState._reset_state(reset_partial_state=True)
        assert code == 0, stderr
        return json.loads((out / "config.json").read_text()), stdout

    config, stdout = finetune(encoder, tmp_path / "run")
    assert config["model"] == "release-avg" and config["lr"] == config["frontend_lr"] == 1e-6
    assert config["continue_pretraining_optimizer"] and "continued" in config["optimizer_origin"]
    assert f"(step {steps})" in config["optimizer_origin"] and "optimizer:" in stdout
    # The finetuning checkpoint's Adam steps of an encoder weight count on from pretraining's.
    checkpoint = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    optimizer = load_file(checkpoint / "optimizer.safetensors")
    tiny_batches = json.loads((tmp_path / "run" / "metrics.json").read_text())
    counts = {float(value) for key, value in optimizer.items() if key.endswith(".step")}
    assert max(counts) > steps and min(counts) < steps, (counts, tiny_batches.keys())

    config, _ = finetune(control, tmp_path / "run-control")
    assert config["optimizer_origin"].startswith("none:") and "untrained control" in config["optimizer_origin"]


def test_release_avg_needs_an_encoder(tiny_llp, tmp_path):
    args = ["--model", "release-avg", "--preset", "tiny", "--features", tiny_llp / "llp.h5", "--annotations", tiny_llp,
            "--out", tmp_path / "run"]  # fmt: skip
    assert_one_line_error(run_cli(finetune_main, *args), "--model release-avg", "--e2e --encoder")
    assert not (tmp_path / "run").exists()


def test_the_release_architecture_rows_run_beside_their_control(tiny_llp, tmp_path):
    from avvp.benchmarks.tables import ROW_NAMES, run_tables

    name = "Pretrain E2E (multi, release architecture)"
    row, control = ROW_NAMES[name], ROW_NAMES[name + " - untrained control"]
    assert (row.model, row.recipe, row.pretrain_recipe, row.paper) == ("release-avg", "release", "release",
                                                                       "Pretrain E2E (multi)")  # fmt: skip
    assert (control.model, control.recipe, control.pretrain_recipe, control.control) == (row.model, row.recipe,
                                                                                         "release", True)  # fmt: skip
    out = tmp_path / "results"
    report = run_tables("tiny", 1, out, data=tiny_llp, rows=[name], verbose=False, pretrain_epochs=1, epochs=1)
    assert set(report["rows"]) == {name, control.name}
    assert "minus_control" in report["rows"][name]
    stages = {folder.name.rsplit("-", 1)[0]: folder for folder in (out / "cache").iterdir() if folder.is_dir()}
    commands = {stage: json.loads((folder / ".done.json").read_text())["recipe"]["argv"]
                for stage, folder in stages.items() if (folder / ".done.json").exists()}  # fmt: skip
    pretraining = commands["pretrain-multi-seed0"]
    assert pretraining[pretraining.index("--recipe") + 1] == "release" and "--epochs" in pretraining
    assert "--recipe" in commands["control-multi-seed0"]
    finetuning = [argv for stage, argv in commands.items() if stage.startswith("finetune-")]
    assert len(finetuning) == 2
    for argv in finetuning:
        assert argv[argv.index("--model") + 1] == "release-avg" and argv[argv.index("--recipe") + 1] == "release"
    encoder = Path(finetuning[0][finetuning[0].index("--encoder") + 1].replace("{cache}", str(out / "cache")))
    assert json.loads((encoder / "config.json").read_text())["architecture"] == "release"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
