"""The public intermediate-layer API of `UMTVideoModel` and the UTA module `UMTAlignmentHeads` (tiny configs, CPU)."""

import pytest
import torch
import torch.nn.functional as F

from modeling_umt import UMTConfig, UMTForPreTraining, UMTVideoModel
from modeling_umt.alignment import UMTAlignmentHeads, visible_teacher_features
from modeling_umt.losses import uta_loss
from modeling_umt.masking import gather_visible
from modeling_umt.positions import sinusoid_table


def tiny_config(**overrides) -> UMTConfig:
    """4 frames of 16x16 px, patch 8 -> 16 tokens; 3 blocks, the last 2 aligned."""
    kwargs = dict(image_size=16, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=3,
                  num_attention_heads=4, intermediate_size=37, uta_output_dim=16, uta_num_layers=2)  # fmt: skip
    kwargs.update(overrides)
    return UMTConfig(**kwargs)


def video(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def mask(batch: int = 2, dropped: int = 10) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    m = torch.zeros(batch, 16, dtype=torch.bool)
    for b in range(batch):
        m[b, torch.randperm(16, generator=g)[:dropped]] = True
    return m


def test_forward_intermediates_returns_the_chosen_blocks_after_the_final_norm():
    torch.manual_seed(0)
    model = UMTVideoModel(tiny_config(use_final_norm=True)).eval()
    x, m = video(), mask()
    with torch.no_grad():
        ref = model(x, bool_masked_pos=m, output_hidden_states=True)
        out = model.forward_intermediates(x, [2, 0], bool_masked_pos=m)
        raw = model.forward_intermediates(x, 2, bool_masked_pos=m, norm=False)
        last = model.forward_intermediates(x, [-1])
    assert out.intermediates.shape == (2, 2, 6, 32)
    torch.testing.assert_close(out.intermediates[0], model.layernorm(ref.hidden_states[1]), atol=0, rtol=0)
    torch.testing.assert_close(out.intermediates[1], model.layernorm(ref.hidden_states[3]), atol=0, rtol=0)
    torch.testing.assert_close(raw.intermediates, torch.stack(ref.hidden_states[2:]), atol=0, rtol=0)
    torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, atol=0, rtol=0)
    torch.testing.assert_close(out.pooler_output, ref.pooler_output, atol=0, rtol=0)
    assert out.bool_masked_pos.dtype == torch.bool and torch.equal(out.bool_masked_pos, m)
    assert last.intermediates.shape == (1, 2, 16, 32) and last.bool_masked_pos is None
    assert model.forward_intermediates(x, ()).intermediates is None
    assert model.forward_intermediates(x).intermediates.shape[0] == 3  # None: every block


def test_forward_intermediates_rejects_blocks_out_of_range():
    model = UMTVideoModel(tiny_config())
    with pytest.raises(ValueError, match=r"`indices` must name blocks in \[-3, 3\), got \[3\]"):
        model.forward_intermediates(video(), [3])
    with pytest.raises(ValueError, match=r"`indices` as a count of last blocks must be in \[0, 3\], got 4"):
        model.forward_intermediates(video(), 4)


def test_alignment_heads_keep_the_official_keys_and_are_shared_by_both_uta_models():
    from modeling_umt import UMTForVideoTextRetrieval

    from _retrieval_tiny import tiny_config as tiny_retrieval_config

    pre = UMTForPreTraining(tiny_config())
    ret = UMTForVideoTextRetrieval(tiny_retrieval_config())
    for model in (pre, ret):
        assert isinstance(model.uta_heads, UMTAlignmentHeads)
        keys = [k for k in model.state_dict() if k.startswith("uta_heads.")]
        assert keys and all(k.split(".")[1].isdigit() and k.split(".")[2] in ("dense", "norm") for k in keys)
        assert not any("position_embeddings" in k for k in keys)  # the sin-cos table is never saved


def test_alignment_heads_add_the_gathered_table_then_project():
    torch.manual_seed(0)
    config = tiny_config(uta_l2_normalize=False)
    heads = UMTAlignmentHeads(config)
    x, m = torch.randn(2, 2, 6, 32), mask()
    out = heads(x, m)
    positions = gather_visible(sinusoid_table(16, 32)[None].expand(2, -1, -1), m)
    for k, head in enumerate(heads):
        torch.testing.assert_close(out[k], head.norm(head.dense(x[k] + positions)), atol=0, rtol=0)
    # another layout (no mask, 5 tokens) builds its own table
    expected = heads[0].norm(heads[0].dense(x[0, :, :5] + sinusoid_table(5, 32)))
    torch.testing.assert_close(heads(x[:, :, :5])[0], expected)


def test_alignment_loss_gathers_full_teacher_targets_and_checks_shapes():
    heads = UMTAlignmentHeads(tiny_config())
    m = mask()
    student = F.normalize(torch.randn(2, 2, 6, 16), dim=-1)
    teacher = torch.randn(2, 2, 16, 16)
    gathered = visible_teacher_features(teacher, m)
    assert gathered.shape == (2, 2, 6, 16) and visible_teacher_features(teacher, None) is teacher
    for reduction in ("mean", "per_layer"):
        expected = uta_loss(student, gathered, reduction=reduction)
        torch.testing.assert_close(heads.loss(student, teacher, m, reduction=reduction), expected, atol=0, rtol=0)
        torch.testing.assert_close(heads.loss(student, gathered, m, reduction=reduction), expected, atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"`teacher_features` must have shape \(2, 2, 6, 16\)"):
        heads.loss(student, torch.randn(2, 2, 6, 8), m)
    with pytest.raises(ValueError, match=r"`intermediates` must be \(K=2"):
        heads(torch.randn(3, 2, 6, 32), m)
