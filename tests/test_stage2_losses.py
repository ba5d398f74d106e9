"""Stage-2 losses (modeling_umt/losses.py): VTC, VTM with hard negatives, MLM corruption and loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from _retrieval_tiny import CLS_ID, MASK_ID, PAD_ID, VOCAB, tiny_config, tiny_inputs
from modeling_umt import UMTForVideoTextRetrieval
from modeling_umt.losses import (
    mask_tokens_for_mlm,
    mlm_loss,
    video_text_similarity,
    vtc_loss,
    vtm_loss,
    vtm_negatives,
)


def test_similarity_is_cosine_averaged_over_frames():
    g = torch.Generator().manual_seed(0)
    v, t = torch.randn(3, 4, 8, generator=g), torch.randn(5, 8, generator=g)
    expected = torch.stack([
        torch.stack([F.cosine_similarity(v[i], t[j][None], dim=-1).mean() for j in range(5)]) for i in range(3)
    ])
    torch.testing.assert_close(video_text_similarity(v, t), expected)
    torch.testing.assert_close(video_text_similarity(v, t, 0.1), expected / 0.1)
    torch.testing.assert_close(video_text_similarity(v[:, 0], t), video_text_similarity(v[:, :1], t))
    with pytest.raises(ValueError, match="video_embeds"):
        video_text_similarity(v, torch.randn(5, 7))


def test_vtc_is_symmetric_cross_entropy_with_multi_positive_targets():
    g = torch.Generator().manual_seed(1)
    v, t = torch.randn(4, 2, 8, generator=g), torch.randn(4, 8, generator=g)
    sim = video_text_similarity(v, t, 0.07)
    diagonal = (F.cross_entropy(sim, torch.arange(4)) + F.cross_entropy(sim.T, torch.arange(4))) / 2
    torch.testing.assert_close(vtc_loss(v, t, 0.07), diagonal)
    torch.testing.assert_close(vtc_loss(v, t, 0.07, ids=torch.tensor([5, 6, 7, 8])), diagonal)
    # items 0 and 1 share an id: each row's target is split evenly over both
    ids = torch.tensor([0, 0, 1, 2])
    targets = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    expected = (-(F.log_softmax(sim, 1) * targets).sum(1).mean() - (F.log_softmax(sim.T, 1) * targets).sum(1).mean()) / 2
    torch.testing.assert_close(vtc_loss(v, t, 0.07, ids=ids), expected)
    with pytest.raises(ValueError, match="pair up"):
        vtc_loss(v, t[:3], 0.07)


def test_vtm_negatives_never_pick_a_positive_and_follow_the_similarity():
    torch.manual_seed(0)
    ids = torch.tensor([0, 0, 1, 2, 3, 3])
    sim = torch.randn(6, 6) * 5
    positive = ids[:, None] == ids[None, :]
    counts = torch.zeros(6, 6)
    for _ in range(300):
        video_neg, text_neg = vtm_negatives(sim, ids)
        assert not positive[torch.arange(6), video_neg].any() and not positive[torch.arange(6), text_neg].any()
        counts[torch.arange(6), text_neg] += 1
    # hard negatives: the most similar non-positive text is drawn most often for every video
    masked = sim.masked_fill(positive, -1e9)
    assert torch.equal(counts.argmax(1), masked.argmax(1))
    video_neg, text_neg = vtm_negatives(sim, ids, hard=False)
    assert not positive[torch.arange(6), video_neg].any() and not positive[torch.arange(6), text_neg].any()
    with pytest.raises(ValueError, match="no negative"):
        vtm_negatives(sim[:2, :2], torch.tensor([4, 4]))


def test_vtm_loss_labels_positives_then_negatives():
    logits = torch.randn(6, 2)
    expected = F.cross_entropy(logits, torch.tensor([1, 1, 0, 0, 0, 0]))
    torch.testing.assert_close(vtm_loss(logits), expected)
    with pytest.raises(ValueError, match="itm_logits"):
        vtm_loss(torch.randn(4, 2))


def test_mlm_corruption_rates_and_special_tokens():
    torch.manual_seed(0)
    ids = torch.randint(4, VOCAB, (200, 40))
    ids[:, 0] = CLS_ID
    ids[:, 30:] = PAD_ID
    corrupted, labels = mask_tokens_for_mlm(ids, MASK_ID, VOCAB, 0.5, pad_token_id=PAD_ID, cls_token_id=CLS_ID)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, 30:].any()
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(corrupted[~chosen], ids[~chosen])
    rate = chosen[:, 1:30].float().mean().item()
    assert abs(rate - 0.5) < 0.02
    masked = (corrupted == MASK_ID) & chosen
    kept = (corrupted == ids) & chosen
    n = chosen.sum().item()
    assert abs(masked.sum().item() / n - 0.8) < 0.02
    assert abs(kept.sum().item() / n - 0.1) < 0.02  # (random ids can equal the original: ~1% extra)


def test_mlm_loss_is_cross_entropy_over_counted_positions():
    logits, labels = torch.randn(2, 5, 11), torch.full((2, 5), -100)
    assert mlm_loss(logits, labels).item() == 0.0  # nothing masked: zero, not NaN
    labels[0, 1], labels[1, 3] = 4, 7
    expected = (F.cross_entropy(logits[0, 1][None], torch.tensor([4])) + F.cross_entropy(logits[1, 3][None], torch.tensor([7]))) / 2
    torch.testing.assert_close(mlm_loss(logits, labels), expected)


def test_model_mlm_at_masked_positions_equals_full_sequence_loss():
    torch.manual_seed(0)
    model = UMTForVideoTextRetrieval(tiny_config()).eval()
    pixel_values, ids, mask = tiny_inputs()
    corrupted, labels = mask_tokens_for_mlm(ids, MASK_ID, VOCAB, 0.5, pad_token_id=PAD_ID, cls_token_id=CLS_ID)
    with torch.no_grad():
        video = model.get_video_features(pixel_values).last_hidden_state
        ours = model.masked_lm_loss(ids, mask, video, mlm_input_ids=corrupted, mlm_labels=labels)
        hidden = model.text_model(corrupted, mask, mode="text").last_hidden_state
        hidden = model.text_model(attention_mask=mask, hidden_states=hidden, encoder_hidden_states=video,
                                  mode="fusion").last_hidden_state
        full = F.cross_entropy(model.mlm_head(hidden).view(-1, VOCAB), labels.view(-1), ignore_index=-100)
    torch.testing.assert_close(ours, full)
    assert math.isfinite(ours.item())


def test_seeded_training_forward_is_deterministic():
    torch.manual_seed(0)
    model = UMTForVideoTextRetrieval(tiny_config()).train()
    pixel_values, ids, mask = tiny_inputs()
    losses = []
    for _ in range(2):
        torch.manual_seed(7)
        out = model(pixel_values, ids, mask, return_loss=True)
        losses.append(torch.stack([out.loss_vtc, out.loss_vtm, out.loss_mlm]))
    torch.testing.assert_close(losses[0], losses[1], atol=0, rtol=0)
