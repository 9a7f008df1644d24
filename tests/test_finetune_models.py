"""Parsers, attention, gradient reversal and loss terms of the finetune stage."""

import math
from dataclasses import replace

import pytest
import torch

from avvp.finetune.config import FinetuneConfig
from avvp.finetune.losses import adversarial_loss, guided_loss, parser_loss, weak_loss
from avvp.finetune.models import REGISTRY, FinetuneModel, ParserOutput, ParserSizes, build_parser, has_discriminator
from avvp.finetune.models.attention import Attention
from avvp.finetune.models.discriminator import reversal_strength, reverse_gradient

# Odd widths on purpose: parsers read their input widths from the store (e.g. exported embeddings).
WIDTHS = {"audio": 12, "visual": 20, "motion": 8}
SIZES = ParserSizes(hidden_size=16, num_heads=2, intermediate_size=24, dropout=0.1)
PAPER_WEIGHTS = FinetuneConfig().loss_weights()


def _batch(batch_size: int = 3, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    features = {name: torch.randn(batch_size, 10, width, generator=generator) for name, width in WIDTHS.items()}
    labels = (torch.rand(batch_size, 25, generator=generator) < 0.2).float()
    return features, labels


def test_registry_names_the_paper_rows_and_every_switch_combination():
    assert {"han", "base", "base-gcaa", "base-adv-skip", "base-adv-skip-gcaa"} <= set(REGISTRY)
    base = {name for name in REGISTRY if name.startswith("base")}
    assert len(base) == 8 and {"base-skip", "base-adv", "base-skip-gcaa", "base-adv-gcaa"} <= base


@pytest.mark.parametrize("name", list(REGISTRY))
def test_forward_backward_every_variant(name):
    torch.manual_seed(0)
    model = FinetuneModel(build_parser(name, WIDTHS, SIZES)).train()
    features, labels = _batch()
    output = model(features, adv_strength=0.5)
    assert isinstance(output, ParserOutput)
    assert output.video_prob.shape == output.audio_prob.shape == output.visual_prob.shape == (3, 25)
    assert output.snippet_prob.shape == (3, 10, 2, 25)
    for prob in (output.video_prob, output.audio_prob, output.visual_prob, output.snippet_prob):
        assert torch.isfinite(prob).all() and (prob >= 0).all() and (prob <= 1).all()
    if has_discriminator(name):
        assert output.modality_logits.shape == (3, 10, 2) and torch.isfinite(output.modality_logits).all()
    else:
        assert output.modality_logits is None
    terms = parser_loss(output, labels, PAPER_WEIGHTS)
    assert torch.isfinite(terms.backward)
    terms.backward.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_gradient_reversal_negates_and_scales():
    x = torch.randn(4, 5, requires_grad=True)
    upstream = torch.randn(4, 5)
    y = reverse_gradient(x, 0.3)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.allclose(x.grad, -0.3 * upstream)


def test_reversal_schedule():
    assert reversal_strength(0.0) == 0.0
    assert reversal_strength(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert reversal_strength(1.0) == pytest.approx(1.0, abs=1e-4)
    strengths = [reversal_strength(p / 10) for p in range(11)]
    assert strengths == sorted(strengths)


def test_discriminator_path_reverses_encoder_gradients_only():
    """L_ad alone: the discriminator gets its plain gradient, the encoder -strength times the plain gradient."""
    torch.manual_seed(0)
    model = build_parser("base-adv-skip", WIDTHS, replace(SIZES, dropout=0.0))
    features, _ = _batch()

    def grads(strength: float) -> dict[str, torch.Tensor]:
        model.zero_grad()
        adversarial_loss(model(features, adv_strength=strength).modality_logits)[0].backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, reversed_ = grads(-1.0), grads(0.7)  # strength -1 multiplies by +1: the unreversed gradient
    for name, grad in plain.items():
        expected = grad if name.startswith("discriminator.") else -0.7 * grad
        assert torch.allclose(reversed_[name], expected, atol=1e-6), name
    assert any(n.startswith("inputs.") for n in plain) and any(n.startswith("discriminator.") for n in plain)


@pytest.mark.parametrize("heads", [1, 4])
def test_gcaa_with_gate_forced_to_zero_is_scaled_dot_product_attention(heads):
    torch.manual_seed(0)
    hidden_size = 16
    gcaa = Attention(hidden_size, heads, dropout=0.0, global_context=True).eval()
    query, context = torch.randn(2, 10, hidden_size), torch.randn(2, 7, hidden_size)
    gcaa.fixed_gate = 0.0
    reference = torch.nn.MultiheadAttention(hidden_size, heads, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([gcaa.q_proj.weight, gcaa.k_proj.weight, gcaa.v_proj.weight]))
        reference.in_proj_bias.copy_(torch.cat([gcaa.q_proj.bias, gcaa.k_proj.bias, gcaa.v_proj.bias]))
        reference.out_proj.load_state_dict(gcaa.out_proj.state_dict())
        expected = reference(query, context, context, need_weights=False)[0]
        assert torch.allclose(gcaa(query, context), expected, atol=1e-5)
        # By hand, one head: softmax(q k^T / sqrt(d)) v.
        if heads == 1:
            q, k, v = gcaa.q_proj(query), gcaa.k_proj(context), gcaa.v_proj(context)
            by_hand = gcaa.out_proj(torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hidden_size), -1) @ v)
            assert torch.allclose(gcaa(query, context), by_hand, atol=1e-5)
        gcaa.fixed_gate = None
        assert not torch.allclose(gcaa(query, context), expected, atol=1e-3)  # the learned gates do something


def test_gcaa_gates_the_global_context_into_queries_and_keys():
    """Gate 1: every query is the projected context, so every position attends alike."""
    torch.manual_seed(0)
    gcaa = Attention(16, 1, dropout=0.0, global_context=True).eval()
    gcaa.fixed_gate = 1.0
    with torch.no_grad():
        out = gcaa(torch.randn(2, 10, 16), torch.randn(2, 10, 16))
    assert torch.allclose(out, out[:, :1].expand_as(out), atol=1e-6)


def test_loss_terms_on_a_hand_worked_case():
    labels = torch.tensor([[1.0, 0.0]])
    output = ParserOutput(
        video_prob=torch.tensor([[0.5, 0.5]]),
        audio_prob=torch.tensor([[0.8, 0.2]]),
        visual_prob=torch.tensor([[0.8, 0.2]]),
        snippet_prob=torch.full((1, 10, 2, 2), 0.5),
        modality_logits=torch.tensor([[[0.0, 0.0], [-2.0, 2.0]]]),  # (B=1, T=2, 2)
    )
    ln2, ln08, ln02 = math.log(2), math.log(0.8), math.log(0.2)
    wsl = ln2  # BCE(0.5, y) = ln 2 whatever y
    audio = -ln08  # targets (1, 0): -ln 0.8 for both classes
    visual = -(0.95 * ln08 + 0.05 * ln02)  # smoothed targets (0.95, 0.05), the same for both classes
    adv = (2 * ln2 + 2 * math.log(1 + math.exp(-2))) / 4  # audio target 0, visual 1; logits 0,0 then -2,+2
    assert weak_loss(output.video_prob, labels).item() == pytest.approx(wsl, abs=1e-6)
    assert guided_loss(output.audio_prob, output.visual_prob, labels, 0.0, 0.1).item() == pytest.approx(
        audio + visual, abs=1e-6
    )
    loss, accuracy = adversarial_loss(output.modality_logits)
    assert loss.item() == pytest.approx(adv, abs=1e-6)
    assert accuracy.item() == pytest.approx(0.75)  # logit 0 says audio: right for audio, wrong for visual
    terms = parser_loss(output, labels, PAPER_WEIGHTS)
    assert terms.backward.item() == pytest.approx(wsl + 0.6 * (audio + visual) + 0.4 * adv, abs=1e-6)
    assert terms.loss.item() == pytest.approx(wsl + 0.6 * (audio + visual) - 0.4 * adv, abs=1e-6)
    assert set(terms.logged()) == {"loss", "wsl", "guided", "adv", "disc_acc"}
    no_adv = parser_loss(ParserOutput(**{**output.__dict__, "modality_logits": None}), labels, PAPER_WEIGHTS)
    assert set(no_adv.logged()) == {"loss", "wsl", "guided"}
