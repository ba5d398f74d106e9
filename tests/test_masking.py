"""Masks: exact counts, True = masked, determinism, multinomial semantics, tube tiling, gathering, errors."""

import pytest
import torch

from modeling_umt.masking import gather_visible, random_mask, semantic_mask, tube_mask


def _attention(B=2, T=3, HW=196, seed=0):
    return torch.rand(B, T, HW, generator=torch.Generator().manual_seed(seed)).softmax(-1)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("ratio, visible", [(0.8, 40), (0.5, 98), (0.9, 20), (0.0, 196)])
def test_semantic_mask_keeps_exactly_hw_minus_int_hw_ratio_per_frame(ratio, visible):
    mask = semantic_mask(_attention(), ratio, _gen(0))
    assert mask.shape == (2, 3 * 196) and mask.dtype == torch.bool
    assert ((~mask).view(2, 3, 196).sum(-1) == visible).all()


def test_semantic_mask_true_means_masked_and_zero_weight_tokens_are_never_kept():
    # All attention on tokens {3, 7, 11, 15} of each frame; keeping 4 of 16 must keep exactly those.
    attn = torch.zeros(2, 2, 16)
    attn[..., [3, 7, 11, 15]] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    mask = semantic_mask(attn, 0.75, _gen(0)).view(2, 2, 16)
    visible = torch.zeros(16, dtype=torch.bool)
    visible[[3, 7, 11, 15]] = True
    assert torch.equal(mask, (~visible).expand(2, 2, 16))


def test_semantic_mask_is_frame_wise_t_major():
    attn = torch.zeros(1, 3, 4)
    attn[0, 0, 0] = attn[0, 1, 1] = attn[0, 2, 2] = 1.0  # one positive weight per frame, a different token each
    mask = semantic_mask(attn, 0.75, _gen(0))  # keep 1 of 4 per frame
    assert (~mask[0]).nonzero().flatten().tolist() == [0, 4 + 1, 8 + 2]


def test_semantic_mask_is_deterministic_given_a_generator():
    attn = _attention()
    assert torch.equal(semantic_mask(attn, 0.8, _gen(3)), semantic_mask(attn, 0.8, _gen(3)))
    assert not torch.equal(semantic_mask(attn, 0.8, _gen(3)), semantic_mask(attn, 0.8, _gen(4)))


def test_semantic_mask_equals_the_official_full_multinomial_procedure():
    # The official engine (engine_for_pretraining_umt.py, models/umt.py:encode_teacher), restated from the
    # reference notes: draw all N without replacement, the first N_vis draws are visible.
    attn = _attention(B=3, T=4)
    B, T, N = attn.shape
    for ratio in (0.8, 0.5):
        torch.manual_seed(11)
        flat = attn.reshape(B * T, N)
        n_vis = N - int(N * ratio)
        importance = torch.multinomial(flat, N)
        official = torch.ones((B * T, N))
        official[torch.arange(B * T).view(-1, 1).repeat(1, n_vis), importance[:, :n_vis]] = 0
        official = official.view(B, -1).to(torch.bool)
        assert torch.equal(semantic_mask(attn, ratio, _gen(11)), official)
        torch.manual_seed(11)
        assert torch.equal(semantic_mask(attn, ratio), official)  # no generator: the global RNG, like the official


def test_semantic_mask_samples_in_proportion_to_attention_not_top_k():
    # 4000 frames of 20 tokens: tokens 0-4 carry 10x the weight of tokens 5-19; 5 of 20 are kept per frame.
    attn = torch.ones(1, 4000, 20)
    attn[..., :5] = 10.0
    kept = (~semantic_mask(attn, 0.75, _gen(0))).view(4000, 20).float().mean(0)
    high, low = kept[:5].mean(), kept[5:].mean()
    assert high > 5 * low, (high, low)
    assert low > 0.01  # a weighted draw, not a top-k: low-attention tokens are sometimes kept


def test_random_mask_counts_determinism_and_independent_samples():
    mask = random_mask(64, 50, 0.9, _gen(0))
    assert mask.shape == (64, 50) and mask.dtype == torch.bool
    assert (mask.sum(1) == int(0.9 * 50)).all()
    assert torch.equal(mask, random_mask(64, 50, 0.9, _gen(0)))
    assert len({tuple(row.tolist()) for row in mask}) > 60  # per-sample patterns
    assert mask.float().mean(0).min() > 0.6  # every position gets masked sometimes (uniform, not fixed)


def test_tube_mask_tiles_one_pattern_over_frames():
    mask = tube_mask(4, 8, 196, 0.75, _gen(0))
    assert mask.shape == (4, 8 * 196)
    frames = mask.view(4, 8, 196)
    assert torch.equal(frames, frames[:, :1].expand(4, 8, 196))
    assert (frames[:, 0].sum(-1) == int(0.75 * 196)).all()
    assert not torch.equal(frames[0, 0], frames[1, 0])


def test_masks_follow_the_generator_device_and_the_attention_device():
    assert random_mask(2, 8, 0.5, _gen(0)).device == torch.device("cpu")
    assert tube_mask(2, 2, 8, 0.5, device="cpu").device == torch.device("cpu")
    assert semantic_mask(_attention(), 0.5).device == _attention().device


def test_gather_visible_matches_boolean_indexing_for_tokens_and_layer_stacks():
    x = torch.randn(6, 2, 3 * 16, 5)  # (K, B, N, C)
    mask = semantic_mask(_attention(B=2, T=3, HW=16), 0.75, _gen(0))
    out = gather_visible(x, mask)
    assert out.shape == (6, 2, 3 * 4, 5)
    for k in range(6):
        torch.testing.assert_close(out[k], x[k][~mask].reshape(2, -1, 5), rtol=0, atol=0)
    torch.testing.assert_close(gather_visible(x[0], mask), x[0][~mask].reshape(2, -1, 5), rtol=0, atol=0)


def test_gather_visible_rejects_unequal_counts_and_bad_masks():
    x = torch.randn(2, 4, 3)
    uneven = torch.tensor([[True, False, False, False], [True, True, False, False]])
    with pytest.raises(ValueError, match="different number of tokens"):
        gather_visible(x, uneven)
    with pytest.raises(ValueError, match="mask must be bool"):
        gather_visible(x, uneven.int())
    with pytest.raises(ValueError, match="tokens must be"):
        gather_visible(torch.randn(2, 5, 3), uneven)


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, "0.5", True, None])
def test_invalid_mask_ratio_raises(ratio):
    for make in (lambda: semantic_mask(_attention(), ratio), lambda: random_mask(2, 8, ratio),
                 lambda: tube_mask(2, 2, 8, ratio)):
        with pytest.raises(ValueError, match="mask_ratio"):
            make()


def test_invalid_shapes_and_sizes_raise():
    with pytest.raises(ValueError, match="cls_attention"):
        semantic_mask(torch.rand(6, 196), 0.8)
    with pytest.raises(ValueError, match="batch"):
        random_mask(0, 8, 0.5)
    with pytest.raises(ValueError, match="num_tokens"):
        random_mask(2, 2.5, 0.5)
    with pytest.raises(ValueError, match="num_frames"):
        tube_mask(2, 0, 8, 0.5)
    with pytest.raises(ValueError, match="tokens_per_frame"):
        tube_mask(2, 2, 0, 0.5)
