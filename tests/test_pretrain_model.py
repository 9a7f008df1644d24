"""The encoder: shapes, gradients, UNITER-style embeddings, save_pretrained/from_pretrained, load_encoder errors."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from avvp.errors import AvvpError
from avvp.pretrain import AVEncoderConfig, AVEncoderModel, load_encoder, save_encoder
from avvp.pretrain.config import PRESETS, PretrainConfig
from avvp.pretrain.data import PretrainCorpus, feature_statistics
from avvp.pretrain.modeling import weights_checksum

WIDTHS = {"audio": 12, "visual": 20, "motion": 8}


def tiny_config(**overrides) -> AVEncoderConfig:
    settings = dict(
        audio_size=12, visual_size=20, motion_size=8, hidden_size=16, num_layers=2, num_heads=2,
        intermediate_size=32,
    )  # fmt: skip
    return AVEncoderConfig(**{**settings, **overrides})


def inputs(batch=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 10, width, generator=generator) for width in WIDTHS.values()]


@pytest.fixture(scope="module")
def saved_encoder(tmp_path_factory):
    torch.manual_seed(0)
    model = AVEncoderModel(tiny_config()).eval()
    model.set_input_statistics({name: (torch.randn(width), torch.rand(width) + 0.5) for name, width in WIDTHS.items()})
    path = tmp_path_factory.mktemp("encoder") / "run"
    save_encoder(model, path)
    return model, path


def test_forward_shapes_and_gradients():
    torch.manual_seed(0)
    model = AVEncoderModel(tiny_config())
    out = model(*inputs())
    assert [tuple(t.shape) for t in out] == [(3, 10, 16)] * 3
    audio, visual, motion = out  # unpacks
    assert torch.equal(audio, out.audio) and torch.isfinite(torch.stack(list(out))).all()
    (audio.sum() + visual.pow(2).sum() + motion.mean()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_time_and_modality_are_embedded():
    torch.manual_seed(0)
    model = AVEncoderModel(tiny_config()).eval()
    audio, visual, motion = inputs(batch=1)
    with torch.no_grad():
        base = model(audio, visual, motion)
        # Same visual and motion: the audio outputs still depend on them (one sequence, cross-modal attention).
        changed = model(audio, visual + 1.0, motion)
        assert not torch.allclose(base.audio, changed.audio)
        # Position ids are the snippet index: reversing time does not merely reverse the outputs.
        flipped = model(audio.flip(1), visual.flip(1), motion.flip(1))
        assert not torch.allclose(flipped.audio.flip(1), base.audio, atol=1e-4)
        # Token types are the modality: the same features as audio and as motion give different embeddings.
        same = torch.randn(1, 10, 8)
        swap = AVEncoderModel(tiny_config(audio_size=8)).eval()
        out = swap(same, visual, same)
        assert not torch.allclose(out.audio, out.motion)
    assert model.bert.embeddings.token_type_embeddings.num_embeddings == 3
    assert model.bert.embeddings.position_embeddings.num_embeddings == 10


def test_wrong_input_shape_is_explained():
    model = AVEncoderModel(tiny_config())
    audio, visual, motion = inputs()
    with pytest.raises(ValueError, match=r"expected \(B, 10, width\)"):
        model(audio[:, :5], visual[:, :5], motion[:, :5])


def test_save_pretrained_from_pretrained_identical(saved_encoder):
    model, path = saved_encoder
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "avvp_av_encoder"
    assert (config["audio_size"], config["visual_size"], config["motion_size"]) == (12, 20, 8)
    loaded = load_encoder(path)
    assert not loaded.training
    assert torch.equal(loaded.projections["visual"].std, model.projections["visual"].std)  # statistics saved too
    assert weights_checksum(loaded) == weights_checksum(model)
    with torch.no_grad():
        for a, b in zip(model(*inputs()), loaded(*inputs()), strict=True):
            assert torch.equal(a, b)


def test_presets():
    assert PretrainConfig() == PretrainConfig.from_preset("demo")
    paper = PretrainConfig.from_preset("paper")
    assert (paper.hidden_size, paper.num_layers, paper.num_heads) == (1024, 12, 16)
    assert PretrainConfig.from_preset("tiny", hidden_size=32).hidden_size == 32
    assert set(PRESETS) == {"tiny", "demo", "paper"}


def _broken(tmp_path, saved, name):
    target = tmp_path / name
    shutil.copytree(saved, target)
    return target


def test_load_encoder_errors(tmp_path, saved_encoder):
    _, saved = saved_encoder
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = [("no such encoder directory", tmp_path / "nowhere"), ("no such encoder directory", tmp_path / "file")]
    cases.append(("no config.json", tmp_path / "empty"))

    corrupt_json = _broken(tmp_path, saved, "corrupt_json")
    (corrupt_json / "config.json").write_text("{not json")
    cases.append(("not a valid JSON config", corrupt_json))

    foreign = _broken(tmp_path, saved, "foreign")
    (foreign / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 16}))
    cases.append(("model type 'bert'; expected 'avvp_av_encoder'", foreign))

    no_weights = _broken(tmp_path, saved, "no_weights")
    (no_weights / "model.safetensors").unlink()
    cases.append(("no model.safetensors", no_weights))

    corrupt_weights = _broken(tmp_path, saved, "corrupt_weights")
    (corrupt_weights / "model.safetensors").write_bytes(b"\x00garbage" * 20)
    cases.append(("cannot load the encoder", corrupt_weights))

    wrong_shapes = _broken(tmp_path, saved, "wrong_shapes")
    config = json.loads((wrong_shapes / "config.json").read_text())
    config["hidden_size"], config["num_heads"] = 8, 2
    (wrong_shapes / "config.json").write_text(json.dumps(config))
    cases.append(
        (r"weights do not match config.json \(.* is \(16,\) in model.safetensors, \(8,\) by config", wrong_shapes)
    )

    missing_key = _broken(tmp_path, saved, "missing_key")
    weights = load_file(missing_key / "model.safetensors")
    del weights["projections.audio.linear.weight"]
    save_file(weights, missing_key / "model.safetensors", metadata={"format": "pt"})
    cases.append(("weights do not match config.json \\(missing keys: projections.audio.linear.weight\\)", missing_key))

    extra_key = _broken(tmp_path, saved, "extra_key")
    weights = load_file(extra_key / "model.safetensors")
    weights["head.weight"] = torch.zeros(2)
    save_file(weights, extra_key / "model.safetensors", metadata={"format": "pt"})
    cases.append(("weights do not match config.json \\(unexpected keys: head.weight\\)", extra_key))

    for message, path in cases:
        with pytest.raises(AvvpError, match=message) as error:
            load_encoder(path)
        assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_feature_statistics_match_numpy():
    generator = torch.Generator().manual_seed(0)
    streams = {"audio": 5 + 3 * torch.randn(40, 10, 6, generator=generator), "visual": torch.randn(40, 10, 4)}
    streams["visual"][:, :, 2] = 7.0  # a feature constant over the corpus
    corpus = PretrainCorpus([f"v{i}" for i in range(40)], streams, torch.ones(40, 10, 10, dtype=torch.bool))
    rows = np.arange(3, 37)
    statistics = feature_statistics(corpus, rows, chunk=5)
    for name, (mean, std) in statistics.items():
        snippets = streams[name][rows].reshape(-1, streams[name].shape[-1]).double().numpy()
        np.testing.assert_allclose(mean.numpy(), snippets.mean(0), rtol=1e-5, atol=1e-5)
        expected = snippets.std(0)
        if name == "visual":
            expected[2] = 1e-3 * expected.mean()
        np.testing.assert_allclose(std.numpy(), expected, rtol=1e-4, atol=1e-7)
    # The encoder standardises with them: shifting and scaling a stream together with its statistics changes nothing.
    model = AVEncoderModel(tiny_config()).eval()
    audio, visual, motion = inputs()
    with torch.no_grad():
        base = model(audio, visual, motion)
        model.set_input_statistics({"audio": (torch.full((12,), 4.0), torch.full((12,), 2.0))})
        moved = model(audio * 2 + 4, visual, motion)
    assert torch.allclose(base.audio, moved.audio, atol=1e-5)
