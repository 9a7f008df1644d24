"""`avvp-finetune import-han`: the HAN reference weights give the reference's probabilities in our `han`."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avvp.errors import ConfigError
from avvp.finetune.evaluate import load_run
from avvp.finetune.import_han_weights import import_han

D, FF = 64, 48  # the release uses 512 / 512; smaller keeps the test fast, the code path is the same
WIDTHS = {"audio": 128, "visual": 2048, "motion": 512}


def reference_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the HAN release's key names and shapes (random weights), plus its unused modules."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.1

    state = {}
    for name, (out_width, in_width) in {
        "fc_a": (D, 128),
        "fc_v": (D, 2048),
        "fc_st": (D, 512),
        "fc_fusion": (D, 2 * D),
        "fc_prob": (25, D),
        "fc_frame_att": (25, D),
        "fc_av_att": (25, D),
        "hat_encoder.layers.0.linear1": (FF, D),
        "hat_encoder.layers.0.linear2": (D, FF),
    }.items():
        state[f"{name}.weight"], state[f"{name}.bias"] = rand(out_width, in_width), rand(out_width)
    for attn in ("self_attn", "cm_attn"):
        prefix = f"hat_encoder.layers.0.{attn}"
        state[f"{prefix}.in_proj_weight"], state[f"{prefix}.in_proj_bias"] = rand(3 * D, D), rand(3 * D)
        state[f"{prefix}.out_proj.weight"], state[f"{prefix}.out_proj.bias"] = rand(D, D), rand(D)
    for norm in ("hat_encoder.layers.0.norm1", "hat_encoder.layers.0.norm2", "hat_encoder.norm1", "hat_encoder.norm2"):
        state[f"{norm}.weight"], state[f"{norm}.bias"] = 1 + rand(D), rand(D)
    state["audio_encoder.layers.0.linear1.weight"] = rand(FF, D)  # unused modules the release also saves
    state["cmt_encoder.layers.0.self_attn.in_proj_weight"] = rand(3 * D, D)
    return state


def reference_forward(state, audio, visual_frames, motion):
    """The release's MMIL_Net forward, written out: fc_v on 80 frames, mean of each 8, HAN layer, MMIL pooling."""

    def linear(name, x):
        return F.linear(x, state[f"{name}.weight"], state[f"{name}.bias"])

    def attention(name):
        module = nn.MultiheadAttention(D, 1)  # sequence-first, as in the release
        prefix = f"hat_encoder.layers.0.{name}"
        module.load_state_dict({k.removeprefix(prefix + "."): v for k, v in state.items() if k.startswith(prefix)})
        return module.eval()

    self_attn, cm_attn = attention("self_attn"), attention("cm_attn")

    def layer(src_q, src_v):  # HANLayer.forward, eval mode (dropout off)
        src_q, src_v = src_q.permute(1, 0, 2), src_v.permute(1, 0, 2)  # (T, B, D)
        src1 = cm_attn(src_q, src_v, src_v)[0]
        src2 = self_attn(src_q, src_q, src_q)[0]
        src_q = F.layer_norm(
            src_q + src1 + src2,
            (D,),
            state["hat_encoder.layers.0.norm1.weight"],
            state["hat_encoder.layers.0.norm1.bias"],
        )
        src2 = linear("hat_encoder.layers.0.linear2", F.relu(linear("hat_encoder.layers.0.linear1", src_q)))
        src_q = F.layer_norm(
            src_q + src2, (D,), state["hat_encoder.layers.0.norm2.weight"], state["hat_encoder.layers.0.norm2.bias"]
        )
        return src_q.permute(1, 0, 2)

    x1 = linear("fc_a", audio)
    vid_s = linear("fc_v", visual_frames).permute(0, 2, 1).unsqueeze(-1)  # (B, D, 80, 1)
    vid_s = F.avg_pool2d(vid_s, (8, 1)).squeeze(-1).permute(0, 2, 1)  # (B, 10, D)
    x2 = linear("fc_fusion", torch.cat([vid_s, linear("fc_st", motion)], dim=-1))
    x1, x2 = layer(x1, x2), layer(x2, x1)
    x = torch.cat([x1.unsqueeze(-2), x2.unsqueeze(-2)], dim=-2)  # (B, 10, 2, D)
    frame_prob = torch.sigmoid(linear("fc_prob", x))
    frame_att = torch.softmax(linear("fc_frame_att", x), dim=1)
    av_att = torch.softmax(linear("fc_av_att", x), dim=2)
    temporal_prob = frame_att * frame_prob
    global_prob = (temporal_prob * av_att).sum(dim=2).sum(dim=1)
    return global_prob, temporal_prob[:, :, 0, :].sum(dim=1), temporal_prob[:, :, 1, :].sum(dim=1), frame_prob


def test_import_han_gives_the_reference_probabilities(tmp_path):
    state = reference_state_dict()
    checkpoint = tmp_path / "MMIL_Net.pt"
    torch.save(state, checkpoint)
    run = import_han(checkpoint, tmp_path / "han-official")
    cfg, model = load_run(run)
    assert cfg.model == "han" and cfg.input_widths == WIDTHS and (cfg.hidden_size, cfg.intermediate_size) == (D, FF)

    generator = torch.Generator().manual_seed(1)
    audio = torch.randn(3, 10, 128, generator=generator)
    visual_frames = torch.randn(3, 80, 2048, generator=generator)
    motion = torch.randn(3, 10, 512, generator=generator)
    with torch.no_grad():
        expected = reference_forward(state, audio, visual_frames, motion)
        # The store holds the mean of each second's 8 frames.
        visual = visual_frames.view(3, 10, 8, 2048).mean(dim=2)
        output = model({"audio": audio, "visual": visual, "motion": motion})
    for ours, theirs in zip(
        (output.video_prob, output.audio_prob, output.visual_prob, output.snippet_prob), expected, strict=True
    ):
        assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def test_import_han_lists_missing_and_unexpected_keys(tmp_path):
    state = reference_state_dict()
    del state["fc_frame_att.bias"]
    state["fc_extra.weight"] = torch.zeros(2, 2)
    checkpoint = tmp_path / "bad.pt"
    torch.save(state, checkpoint)
    with pytest.raises(ConfigError) as error:
        import_han(checkpoint, tmp_path / "run")
    message = str(error.value)
    assert "\n" not in message and "missing (1): fc_frame_att.bias" in message
    assert "unexpected (1): fc_extra.weight" in message
    assert not (tmp_path / "run").exists()


def test_import_han_reports_shape_mismatches(tmp_path):
    state = reference_state_dict()
    state["fc_prob.weight"] = torch.zeros(25, D + 1)
    checkpoint = tmp_path / "shapes.pt"
    torch.save(state, checkpoint)
    with pytest.raises(ConfigError, match=r"shape mismatch \(1\): parser.head.prob.weight \(25, 65\) vs \(25, 64\)"):
        import_han(checkpoint, tmp_path / "run")


def test_import_han_refuses_non_finite_weights(tmp_path):
    state = reference_state_dict()
    state["fc_prob.bias"][3] = float("nan")
    checkpoint = tmp_path / "nan.pt"
    torch.save(state, checkpoint)
    with pytest.raises(ConfigError, match=r"nan.pt: non-finite values \(NaN or inf\) in parser.head.prob.bias"):
        import_han(checkpoint, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_import_han_refuses_pickled_objects(tmp_path):
    checkpoint = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 2), checkpoint)  # a whole module, not a state dict: weights_only refuses it
    with pytest.raises(ConfigError, match="not a loadable PyTorch state dict"):
        import_han(checkpoint, tmp_path / "run")


def test_imported_run_is_accepted_by_evaluate_and_parse(tmp_path, tiny_llp):
    from avvp.finetune.evaluate import evaluate_run
    from avvp.finetune.parse import parse

    checkpoint = tmp_path / "MMIL_Net.pt"
    torch.save(reference_state_dict(), checkpoint)
    run = import_han(checkpoint, tmp_path / "han-official")
    with pytest.raises(ConfigError, match="pass --features and --annotations"):
        evaluate_run(run, "val")
    scores = evaluate_run(run, "val", features=tiny_llp / "llp.h5", annotations=tiny_llp)
    assert set(scores) == {"segment", "event"}
    events = parse(run, tiny_llp / "llp.h5", tmp_path / "events.json")
    assert len(events) == 240 and (tmp_path / "events.json").is_file()
