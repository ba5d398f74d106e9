"""TransformersTeacher: CLIP, SigLIP, DINOv2 and DINOv2-with-registers towers as UMT teachers, on tiny random configs.

References are the towers' own outputs: `output_hidden_states` plus the tower's final norm (and projection) for the
targets, eager `output_attentions` for the class-token attention, and SigLIP's own `nn.MultiheadAttention` weights for
its pooling-head probe.
"""

import pytest
import torch
from test_teacher import _perturb, _video
from torch import nn
from transformers import (
    BertConfig,
    BertModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    CLIPVisionModelWithProjection,
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from modeling_umt.teachers import ImageTeacher, TransformersTeacher, UMTTeacher

WIDTH, LAYERS, HEADS, PATCH, SIZE, OUT, REGISTERS = 32, 3, 4, 8, 32, 16, 3  # grid 4x4 -> HW = 16
HW = (SIZE // PATCH) ** 2
COMMON = dict(hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
              image_size=SIZE, patch_size=PATCH)
# family -> (config class, model class, extra config fields, prefix tokens)
FAMILIES = {
    "clip": (CLIPVisionConfig, CLIPVisionModelWithProjection, dict(projection_dim=OUT), 1),
    "clip-no-projection": (CLIPVisionConfig, CLIPVisionModel, {}, 1),
    "siglip": (SiglipVisionConfig, SiglipVisionModel, {}, 0),
    "dinov2": (Dinov2Config, Dinov2Model, {}, 1),
    "dinov2-registers": (Dinov2WithRegistersConfig, Dinov2WithRegistersModel, dict(num_register_tokens=REGISTERS),
                         1 + REGISTERS),
}
CLASS_TOKEN_FAMILIES = ["clip", "clip-no-projection", "dinov2", "dinov2-registers"]


def _tiny(family: str, **kw) -> nn.Module:
    config_class, model_class, extra, _ = FAMILIES[family]
    torch.manual_seed(0)
    model = _perturb(model_class(config_class(**{**COMMON, **extra, **kw}))).eval()
    model.set_attn_implementation("eager")  # the references below need output_attentions
    return model


def _reference_targets(model: nn.Module, family: str, frames: torch.Tensor, return_index):
    """(K, N, HW, D_out) from the tower's own hidden states, final norm and projection."""
    prefix = FAMILIES[family][3]
    vision = getattr(model, "vision_model", model)
    with torch.no_grad():
        hidden = vision(pixel_values=frames, output_hidden_states=True).hidden_states
        norm = vision.layernorm if family.startswith("dinov2") else vision.post_layernorm
        feats = torch.stack([norm(hidden[i + 1][:, prefix:]) for i in return_index])
        projection = getattr(model, "visual_projection", None)
        return feats if projection is None else projection(feats)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_targets_are_patch_tokens_after_the_towers_final_norm_and_projection(family):
    model = _tiny(family)
    teacher = TransformersTeacher(model, num_return_layers=2)
    assert isinstance(teacher, ImageTeacher) and teacher.return_index == [1, 2]
    assert teacher.num_prefix_tokens == FAMILIES[family][3] and teacher.num_patches == HW
    assert teacher.output_dim == (OUT if family == "clip" else WIDTH)
    video = _video(B=2, T=3)
    out = teacher(video)
    assert out.hidden_states.shape == (2, 2, 3 * HW, teacher.output_dim) and out.hidden_states.dtype == torch.float32
    ref = _reference_targets(model, family, video.flatten(0, 1), teacher.return_index)
    torch.testing.assert_close(out.hidden_states, ref.reshape(2, 2, 3 * HW, -1), atol=1e-5, rtol=0)
    assert (ref[0] - ref[-1]).abs().max() > 1e-2  # distinct layers, not one repeated


@pytest.mark.parametrize("family", CLASS_TOKEN_FAMILIES)
def test_class_token_attention_is_the_eager_last_block_row_over_patches_only(family):
    model = _tiny(family)
    teacher = TransformersTeacher(model, num_return_layers=1)
    prefix = teacher.num_prefix_tokens
    video = _video(B=2, T=3)
    with torch.no_grad():
        vision = getattr(model, "vision_model", model)
        attentions = vision(pixel_values=video.flatten(0, 1), output_attentions=True).attentions[-1]  # (N, h, L, L)
    assert attentions.shape[-1] == prefix + HW
    out = teacher(video)
    assert out.cls_attention.shape == (2, 3, HW)  # exactly the patches: class token and registers excluded
    torch.testing.assert_close(out.cls_attention, attentions[:, :, 0, prefix:].mean(1).reshape(2, 3, HW),
                               atol=1e-6, rtol=0)
    # A row sums to 1 minus what the class token pays to the prefix tokens (itself and the registers).
    to_prefix = attentions[:, :, 0, :prefix].sum(-1).mean(1).reshape(2, 3)
    torch.testing.assert_close(out.cls_attention.sum(-1), 1 - to_prefix, atol=1e-6, rtol=0)
    assert (to_prefix > 0).all()


def test_registers_are_prefix_tokens_not_patches():
    model = _tiny("dinov2-registers")
    teacher = TransformersTeacher(model, num_return_layers=1)
    assert teacher.num_prefix_tokens == 1 + REGISTERS
    video = _video(B=1, T=2)
    with torch.no_grad():
        last = model(pixel_values=video.flatten(0, 1)).last_hidden_state  # (N, 1 + R + HW, D), after layernorm
    assert last.shape[1] == 1 + REGISTERS + HW
    torch.testing.assert_close(teacher(video).hidden_states[0], last[:, 1 + REGISTERS:].reshape(1, 2 * HW, WIDTH),
                               atol=1e-5, rtol=0)


def test_siglip_attention_is_the_pooling_heads_probe_over_all_patches():
    model = _tiny("siglip")
    teacher = TransformersTeacher(model, num_return_layers=1)
    video = _video(B=2, T=3)
    with torch.no_grad():
        tokens = model(pixel_values=video.flatten(0, 1)).last_hidden_state  # post-norm, the head's input
        probe = model.head.probe.expand(6, -1, -1)
        _, weights = model.head.attention(probe, tokens, tokens, need_weights=True, average_attn_weights=True)
    out = teacher(video)
    assert out.cls_attention.shape == (2, 3, HW)
    torch.testing.assert_close(out.cls_attention, weights[:, 0].reshape(2, 3, HW), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.cls_attention.sum(-1), torch.ones(2, 3), atol=1e-6, rtol=0)  # no prefix tokens


def test_siglip_without_pooling_head_is_refused():
    with pytest.raises(ValueError, match="vision_use_head=False"):
        TransformersTeacher(_tiny("siglip", vision_use_head=False), num_return_layers=1)


def test_fast_clip_tower_and_the_transformers_wrapper_agree_on_clip():
    model = _tiny("clip")
    generic = TransformersTeacher(model, num_return_layers=2)
    fast = UMTTeacher.from_transformers(model, num_return_layers=2)
    video = _video()
    a, b = generic(video), fast(video)
    torch.testing.assert_close(a.hidden_states, b.hidden_states, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.cls_attention, b.cls_attention, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", ["siglip", "dinov2-registers"])
def test_a_new_resolution_interpolates_positions_and_keeps_the_grid(family):
    teacher = TransformersTeacher(_tiny(family), image_size=2 * SIZE, num_return_layers=1)
    assert teacher.image_size == 2 * SIZE and teacher.num_patches == 4 * HW
    out = teacher(_video(B=1, T=2))  # 32 px frames, resized to 64 px
    assert out.hidden_states.shape == (1, 1, 2 * 4 * HW, WIDTH) and out.cls_attention.shape == (1, 2, 4 * HW)
    with pytest.raises(ValueError, match="multiple of the teacher's patch_size=8"):
        TransformersTeacher(_tiny(family), image_size=SIZE + 4, num_return_layers=1)


@pytest.mark.parametrize("family", ["siglip", "dinov2-registers"])
def test_frozen_deterministic_and_bf16_autocast_outputs_float32(family):
    teacher = TransformersTeacher(_tiny(family), num_return_layers=2)
    assert not any(p.requires_grad for p in teacher.parameters())
    parent = nn.ModuleDict({"teacher": teacher, "student": nn.Linear(2, 2)}).train()
    assert parent["student"].training and not any(m.training for m in teacher.modules())
    video = _video().requires_grad_(True)
    first, second = teacher(video), teacher(video)
    assert torch.equal(first.hidden_states, second.hidden_states)
    assert torch.equal(first.cls_attention, second.cls_attention)
    assert first.hidden_states.grad_fn is None and first.cls_attention.grad_fn is None
    assert teacher(video, return_cls_attention=False).cls_attention is None
    teacher.autocast_dtype = torch.bfloat16
    half = teacher(video)
    assert half.hidden_states.dtype == torch.float32 and half.cls_attention.dtype == torch.float32
    cos = torch.nn.functional.cosine_similarity(half.hidden_states, first.hidden_states, dim=-1)
    assert cos.min() > 0.98, cos.min()


def test_invalid_models_raise_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match="model_type='bert'"):
        TransformersTeacher(BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                 intermediate_size=16, vocab_size=8)))
    with pytest.raises(ValueError, match="model must be"):
        TransformersTeacher("facebook/dinov2-small")
    with pytest.raises(ValueError, match="num_return_layers"):
        TransformersTeacher(_tiny("dinov2"), num_return_layers=LAYERS + 1)
    model = _tiny("dinov2")
    model.embeddings.cls_token.ds_id = 0  # what deepspeed.zero.Init leaves on partitioned weights
    with pytest.raises(ValueError, match="ZeRO-3"):
        TransformersTeacher(model)
