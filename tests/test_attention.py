"""`umt_cpu_bf16` (modeling_umt.attention): chunked bf16 attention against float32 SDPA, its registration in
transformers' attention interface, its use by the student and the CLIP teacher, and the teacher's bf16 weights.

Tolerances (stated in modeling_umt/attention.py): output within 1.5e-2 max |diff| of float32 SDPA; gradients within
2.5e-2 of float32 SDPA's, relative to their largest entry (random unit-normal inputs, head dim 64 or 8).
"""

import copy

import pytest
import torch
import torch.nn.functional as F

import modeling_umt.attention as attention
from modeling_umt import UMTConfig, UMTForPreTraining, UMTVideoModel
from modeling_umt.attention import CPU_BF16_ATTENTION, chunked_bf16_attention, query_chunk_size
from modeling_umt.teachers import CLIPVisionTower, UMTTeacher
from modeling_umt.trainers.teacher_masking import TeacherMaskMixin

OUT_ATOL, GRAD_RTOL = 1.5e-2, 2.5e-2


def _qkv(b, h, n, d, seed=0, n_k=None):
    g = torch.Generator().manual_seed(seed)
    shapes = [(b, h, n, d), (b, h, n_k or n, d), (b, h, n_k or n, d)]
    return [torch.randn(s, generator=g).requires_grad_() for s in shapes]


@pytest.mark.parametrize("n, block_elements, n_k", [(64, 1 << 22, None), (300, 2 * 4 * 300 * 16, None),
                                                    (200, 2 * 4 * 37 * 32, 37)])  # fmt: skip
def test_chunked_attention_matches_fp32_sdpa_forward_and_backward(n, block_elements, n_k):
    q, k, v = _qkv(2, 4, n, 64, n_k=n_k)
    ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)  # (B, N, H, d)
    grad = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    ref_grads = torch.autograd.grad(ref, (q, k, v), grad)
    qb, kb, vb = (t.detach().bfloat16().requires_grad_() for t in (q, k, v))
    out = chunked_bf16_attention(qb, kb, vb, block_elements=block_elements)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    diff = (out.float() - ref).abs().max().item()
    print(f"[umt_cpu_bf16] N={n} output max|diff| vs fp32 SDPA = {diff:.2e}")
    assert diff <= OUT_ATOL, diff
    for name, ours, theirs in zip("qkv", torch.autograd.grad(out, (qb, kb, vb), grad.bfloat16()), ref_grads):
        assert ours.dtype == torch.bfloat16
        rel = ((ours.float() - theirs).abs().max() / theirs.abs().max()).item()
        print(f"[umt_cpu_bf16] N={n} d{name} max|diff| / max|ref| = {rel:.2e}")
        assert rel <= GRAD_RTOL, (name, rel)


def test_chunking_does_not_change_the_result_beyond_bf16_rounding():
    q, k, v = (t.detach().bfloat16() for t in _qkv(1, 2, 100, 8))
    whole = chunked_bf16_attention(q, k, v, scale=0.3)
    chunked = chunked_bf16_attention(q, k, v, scale=0.3, block_elements=2 * 100 * 16)  # chunks of 16 queries
    torch.testing.assert_close(chunked, whole, atol=1e-2, rtol=0)
    exact = torch.softmax(q.float() @ k.float().transpose(-1, -2) * 0.3, -1) @ v.float()
    torch.testing.assert_close(chunked.float(), exact.transpose(1, 2), atol=OUT_ATOL, rtol=0)


def test_query_chunk_size_and_input_checks():
    assert query_chunk_size(12, 320, 320) == 320  # 1.2 M scores fit in one block
    assert query_chunk_size(12, 1568, 1568) == 208  # 4 Mi // (12 * 1568) = 222 -> a multiple of 16
    assert query_chunk_size(12, 9216, 9216, block_elements=1) == 16
    with pytest.raises(ValueError, match="block_elements"):
        query_chunk_size(1, 4, 4, block_elements=0)
    q = torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match="bfloat16"):
        chunked_bf16_attention(q, q, q)
    with pytest.raises(ValueError, match="got \\(1, 2, 4, 8\\), \\(1, 3, 4, 8\\)"):
        chunked_bf16_attention(q.bfloat16(), torch.randn(1, 3, 4, 8).bfloat16(), torch.randn(1, 3, 4, 8).bfloat16())


def _tiny_config(**kw):
    return UMTConfig(image_size=16, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=37, uta_output_dim=16, uta_num_layers=2,
                     pos_embed_reference_frames=4, pos_embed_reference_grid=2, **kw)  # fmt: skip


def _video(batch=2, seed=0):
    return torch.randn(batch, 4, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_student_selects_it_through_the_attention_interface(monkeypatch):
    torch.manual_seed(0)
    ref = UMTVideoModel._from_config(_tiny_config(), attn_implementation="sdpa").eval()
    ours = UMTVideoModel._from_config(_tiny_config(), attn_implementation=CPU_BF16_ATTENTION).eval()
    ours.load_state_dict(ref.state_dict())
    assert ours.config._attn_implementation == CPU_BF16_ATTENTION
    calls = []
    real = attention.chunked_bf16_attention
    monkeypatch.setattr(attention, "chunked_bf16_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    with torch.no_grad():
        expected = ref(_video()).last_hidden_state
        same = ours(_video()).last_hidden_state  # float32: falls back to SDPA, the same numbers
        assert not calls
        torch.testing.assert_close(same, expected, atol=0, rtol=0)
        low = ours.to(torch.bfloat16)(_video().bfloat16()).last_hidden_state
    assert len(calls) == 2  # one per block
    diff = (low.float() - expected).abs().max().item() / expected.abs().max().item()
    print(f"[umt_cpu_bf16] tiny student bf16 vs fp32 SDPA, max|diff| / max|ref| = {diff:.2e}")
    assert diff <= 5e-2


def test_student_training_under_autocast_matches_sdpa_gradients():
    torch.manual_seed(0)
    config = _tiny_config(drop_path_rate=0.0)
    ref = UMTForPreTraining._from_config(config, attn_implementation="sdpa").train()
    ours = UMTForPreTraining._from_config(copy.deepcopy(config), attn_implementation=CPU_BF16_ATTENTION).train()
    ours.load_state_dict(ref.state_dict())
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, ::2] = True
    targets = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(3))
    grads = []
    for model, amp in ((ref, False), (ours, True)):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = model(pixel_values=_video(), bool_masked_pos=mask, teacher_features=targets).loss
        loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        rel = ((grads[1][name].float() - g).abs().max() / g.abs().max().clamp_min(1e-8)).item()
        assert rel <= 0.1, (name, rel)  # the whole student under bf16 autocast, not only the attention


def _tower():
    torch.manual_seed(0)
    tower = CLIPVisionTower(width=32, layers=3, heads=4, patch_size=8, image_size=32, output_dim=16)
    with torch.no_grad():
        for p in tower.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return tower


def test_bf16_teacher_stores_bf16_weights_and_gives_the_autocast_targets():
    frames = torch.randn(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    fp32 = UMTTeacher(_tower(), num_return_layers=2)
    as_before = copy.deepcopy(fp32)
    as_before.autocast_dtype = torch.bfloat16  # float32 weights cast by autocast on every forward
    ours = UMTTeacher(_tower(), num_return_layers=2, autocast_dtype=torch.bfloat16)
    norms = {n for n, _ in ours.named_parameters() if ".ln_" in n or n.startswith("vision.ln_")}
    assert norms and all(p.dtype == torch.float32 for n, p in ours.named_parameters() if n in norms)
    assert all(p.dtype == torch.bfloat16 for n, p in ours.named_parameters() if n not in norms)
    assert ours.input_dtype == torch.float32  # the bicubic resize stays in float32
    out, before, ref = ours(frames), as_before(frames), fp32(frames)
    assert out.hidden_states.dtype == torch.float32 and out.cls_attention.dtype == torch.float32
    torch.testing.assert_close(out.hidden_states, before.hidden_states, atol=0, rtol=0)
    torch.testing.assert_close(out.cls_attention, before.cls_attention, atol=0, rtol=0)
    rel = (out.hidden_states - ref.hidden_states).abs().max() / ref.hidden_states.abs().max()
    assert rel <= 3e-2, rel


def test_teacher_with_chunked_attention_stays_within_tolerance():
    frames = torch.randn(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ref = UMTTeacher(_tower(), num_return_layers=2)(frames)
    chunked = UMTTeacher(_tower(), num_return_layers=2, autocast_dtype=torch.bfloat16,
                         attn_implementation=CPU_BF16_ATTENTION)  # fmt: skip
    assert all(b.attn.attn_implementation == CPU_BF16_ATTENTION for b in chunked.vision.transformer["resblocks"])
    out = chunked(frames)
    rel = (out.hidden_states - ref.hidden_states).abs().max() / ref.hidden_states.abs().max()
    assert rel <= 3e-2, rel
    torch.testing.assert_close(out.cls_attention, ref.cls_attention, atol=2e-2, rtol=0)
    with pytest.raises(ValueError, match="attn_implementation='flash'"):
        UMTTeacher(_tower(), num_return_layers=2, attn_implementation="flash")


class _Masker(TeacherMaskMixin):
    def __init__(self, teacher, mask_type):
        self.teacher, self.mask_type, self.video_mask_ratio, self.image_mask_ratio = teacher, mask_type, 0.5, 0.5

    def record(self, values):
        pass


@pytest.mark.parametrize("mask_type", ["random", "tube", "attention"])
def test_teacher_attention_is_computed_only_for_semantic_masking(mask_type, monkeypatch):
    teacher = UMTTeacher(_tower(), num_return_layers=2)
    asked = []
    real = teacher.forward
    monkeypatch.setattr(teacher, "forward", lambda x, return_cls_attention=True: asked.append(return_cls_attention)
                        or real(x, return_cls_attention))  # fmt: skip
    mask, targets = _Masker(teacher, mask_type).teacher_targets(torch.randn(2, 2, 3, 32, 32), training=True)
    assert asked == [mask_type == "attention"]
    assert mask.shape == (2, 32) and (mask.sum(1) == 16).all()
    assert targets.shape == (2, 2, 16, 16)
    with pytest.raises(ValueError, match="cls_attention"):
        _Masker(teacher, "attention").make_mask(None, grid=(2, 2, 16))
