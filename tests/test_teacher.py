"""UMTTeacher: targets (ln_post + proj on every returned layer), class-token attention, backends, freezing.

Every teacher here is tiny and random (no CLIP weights are downloadable in tests). References are written
independently: a naive full-attention forward below, open_clip's / transformers' own outputs.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modeling_umt.teachers import (
    CLIPVisionTower,
    UMTTeacher,
    resize_positional_embedding,
)

WIDTH, LAYERS, HEADS, PATCH, SIZE, OUT = 32, 4, 4, 8, 32, 16  # grid 4x4 -> HW = 16


def _perturb(module: nn.Module, seed: int = 0) -> nn.Module:
    """Move every parameter off its init (LayerNorm weights off 1, biases off 0) so that each one matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return module


def _tiny_tower(**kw) -> CLIPVisionTower:
    torch.manual_seed(0)
    args = dict(width=WIDTH, layers=LAYERS, heads=HEADS, patch_size=PATCH, image_size=SIZE, output_dim=OUT)
    return _perturb(CLIPVisionTower(**{**args, **kw}))


def _video(B=2, T=3, H=SIZE, W=SIZE, seed=1):
    return torch.randn(B, T, 3, H, W, generator=torch.Generator().manual_seed(seed))


def _naive_forward(tower: CLIPVisionTower, frames: torch.Tensor):
    """Restated OpenAI-CLIP forward with explicit (N, heads, L, L) attention maps; returns all residuals and maps."""
    ln = lambda x, m: F.layer_norm(x, (x.shape[-1],), m.weight, m.bias, m.eps)  # noqa: E731
    N, D, H = frames.shape[0], tower.conv1.weight.shape[0], tower.transformer["resblocks"][0].attn.heads
    x = F.conv2d(frames, tower.conv1.weight, stride=tower.patch_size).flatten(2).transpose(1, 2)
    x = torch.cat([tower.class_embedding.expand(N, 1, D), x], dim=1) + tower.positional_embedding
    x = ln(x, tower.ln_pre)
    residuals, maps = [], []
    for blk in tower.transformer["resblocks"]:
        q, k, v = (ln(x, blk.ln_1) @ blk.attn.in_proj_weight.T + blk.attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(N, -1, H, D // H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1) / math.sqrt(D // H)).softmax(dim=-1)  # (N, H, L, L)
        x = x + blk.attn.out_proj((att @ v).transpose(1, 2).reshape(N, -1, D))
        h = blk.mlp.c_fc(ln(x, blk.ln_2))
        x = x + blk.mlp.c_proj(h * torch.sigmoid(1.702 * h))
        residuals.append(x)
        maps.append(att)
    return residuals, maps


def _naive_targets(tower, video, return_index):
    """Naive (K, B, T*HW, D_out) targets and (B, T, HW) cls attention for a video already at the tower's size."""
    B, T = video.shape[:2]
    residuals, maps = _naive_forward(tower, video.flatten(0, 1))
    feats = torch.stack([ln_post_proj(tower, residuals[i][:, 1:]) for i in return_index])
    return feats.reshape(len(return_index), B, -1, feats.shape[-1]), maps[-1][:, :, 0, 1:].mean(1).reshape(B, T, -1)


def ln_post_proj(tower, tokens):
    return F.layer_norm(tokens, (tokens.shape[-1],), tower.ln_post.weight, tower.ln_post.bias, 1e-5) @ tower.proj


# ------------------------------------------------------------------------------------------------ core


def test_shapes_dtypes_and_ascending_return_index():
    teacher = UMTTeacher(_tiny_tower(), num_return_layers=3)
    assert teacher.return_index == [1, 2, 3]
    out = teacher(_video(B=2, T=3))
    assert out.hidden_states.shape == (3, 2, 3 * 16, OUT) and out.hidden_states.dtype == torch.float32
    assert out.cls_attention.shape == (2, 3, 16) and out.cls_attention.dtype == torch.float32
    assert teacher(_video(), return_cls_attention=False).cls_attention is None
    assert UMTTeacher(_tiny_tower(layers=12), num_return_layers=6).return_index == [6, 7, 8, 9, 10, 11]
    assert UMTTeacher(_tiny_tower(layers=12), num_return_layers=3, return_interval=2).return_index == [7, 9, 11]


def test_every_returned_layer_gets_ln_post_and_proj_like_the_naive_reference():
    tower = _tiny_tower()
    teacher = UMTTeacher(tower, num_return_layers=3)
    video = _video()
    ref_feats, _ = _naive_targets(tower, video, teacher.return_index)
    out = teacher(video)
    torch.testing.assert_close(out.hidden_states, ref_feats, atol=1e-5, rtol=0)
    # ...and not e.g. the raw residual stream or the last layer repeated: the layers must differ.
    assert (ref_feats[0] - ref_feats[-1]).abs().max() > 1e-2


def test_cls_attention_equals_head_average_of_full_attention_row_zero():
    tower = _tiny_tower()
    teacher = UMTTeacher(tower, num_return_layers=2)
    video = _video()
    _, maps = _naive_forward(tower, video.flatten(0, 1))
    out = teacher(video)
    ref = maps[-1][:, :, 0, 1:].mean(dim=1).reshape(2, 3, 16)
    torch.testing.assert_close(out.cls_attention, ref, atol=1e-5, rtol=0)
    # cls->cls dropped: each row sums to 1 minus that entry.
    cls_to_cls = maps[-1][:, :, 0, 0].mean(dim=1).reshape(2, 3)
    torch.testing.assert_close(out.cls_attention.sum(-1), 1 - cls_to_cls, atol=1e-5, rtol=0)


def test_tokens_are_t_major_and_frames_independent():
    teacher = UMTTeacher(_tiny_tower(), num_return_layers=2)
    video = _video(B=2, T=3)
    out = teacher(video)
    for t in range(3):
        single = teacher(video[:, t : t + 1])
        frame_tokens = out.hidden_states[:, :, t * 16 : (t + 1) * 16]
        torch.testing.assert_close(frame_tokens, single.hidden_states, atol=1e-6, rtol=0)
        torch.testing.assert_close(out.cls_attention[:, t], single.cls_attention[:, 0], atol=1e-6, rtol=0)


def test_normalize_flag_gives_unit_vectors_in_the_same_direction():
    tower = _tiny_tower()
    raw = UMTTeacher(tower, num_return_layers=2)(_video()).hidden_states
    unit = UMTTeacher(tower, num_return_layers=2, normalize=True)(_video()).hidden_states
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(unit.shape[:-1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(unit, raw / raw.norm(dim=-1, keepdim=True), atol=1e-6, rtol=0)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(raw.shape[:-1]), atol=1e-2)


def test_resize_is_the_official_bicubic_over_all_planes():
    teacher = UMTTeacher(_tiny_tower(), num_return_layers=2)
    video = _video(B=2, T=3, H=40, W=40)
    # The official engine resizes the (B, C, T, H, W) tensor as (B, C*T, H, W) planes.
    official_layout = video.permute(0, 2, 1, 3, 4).reshape(2, 9, 40, 40)
    resized = F.interpolate(official_layout, size=(SIZE, SIZE), mode="bicubic", align_corners=False)
    resized = resized.reshape(2, 3, 3, SIZE, SIZE).permute(0, 2, 1, 3, 4)
    out, ref = teacher(video), teacher(resized)
    torch.testing.assert_close(out.hidden_states, ref.hidden_states, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.cls_attention, ref.cls_attention, atol=1e-7, rtol=0)
    assert out.hidden_states.shape[2] == 3 * 16  # the token grid follows the teacher's size, not the input's


def test_frozen_no_grad_and_always_eval():
    teacher = UMTTeacher(_tiny_tower(), num_return_layers=2)
    assert not any(p.requires_grad for p in teacher.parameters())
    parent = nn.ModuleDict({"teacher": teacher, "student": nn.Linear(2, 2)})
    parent.train()
    assert parent["student"].training and not teacher.training
    assert not any(m.training for m in teacher.modules())
    video = _video().requires_grad_(True)
    out = teacher(video)
    assert out.hidden_states.grad_fn is None and not out.hidden_states.requires_grad
    assert out.cls_attention.grad_fn is None


def test_bf16_autocast_outputs_float32_close_to_fp32():
    tower = _tiny_tower()
    ref = UMTTeacher(tower, num_return_layers=2)(_video())
    out = UMTTeacher(tower, num_return_layers=2, autocast_dtype=torch.bfloat16)(_video())
    assert out.hidden_states.dtype == torch.float32 and out.cls_attention.dtype == torch.float32
    cos = F.cosine_similarity(out.hidden_states, ref.hidden_states, dim=-1)
    assert cos.min() > 0.98, cos.min()
    torch.testing.assert_close(out.cls_attention, ref.cls_attention, atol=2e-2, rtol=0)


def test_positional_embedding_resize_keeps_cls_row():
    pos = torch.randn(1 + 16, 8)
    new = resize_positional_embedding(pos, 3)
    assert new.shape == (1 + 9, 8) and torch.equal(new[0], pos[0])
    grid = pos[1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(3, 3), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(9, 8)
    torch.testing.assert_close(new[1:], ref)
    assert resize_positional_embedding(pos, 4) is pos


# ------------------------------------------------------------------------------------------------ open_clip


def _tiny_open_clip_visual():
    from open_clip.transformer import QuickGELU, VisionTransformer

    torch.manual_seed(0)
    return _perturb(VisionTransformer(image_size=SIZE, patch_size=PATCH, width=WIDTH, layers=LAYERS, heads=HEADS,
                                      mlp_ratio=4.0, output_dim=OUT, act_layer=QuickGELU)).eval()


def test_open_clip_backend_matches_open_clip_intermediates_and_mha_weights():
    visual = _tiny_open_clip_visual()
    teacher = UMTTeacher.from_open_clip(visual, num_return_layers=3)
    assert teacher.vision.act == "quick_gelu"
    video = _video()
    frames = video.flatten(0, 1)
    captured = {}
    hook = visual.transformer.resblocks[-1].register_forward_pre_hook(lambda m, a: captured.setdefault("x", a[0]))
    with torch.no_grad():
        inter = visual.forward_intermediates(frames, indices=teacher.return_index, output_fmt="NLC",
                                             normalize_intermediates=True, intermediates_only=True)
        blk = visual.transformer.resblocks[-1]
        h = blk.ln_1(captured["x"])
        _, weights = blk.attn(h, h, h, need_weights=True, average_attn_weights=True)  # (N, L, L)
    hook.remove()
    ref = torch.stack([y @ visual.proj for y in inter["image_intermediates"]]).reshape(3, 2, 3 * 16, OUT)
    out = teacher(video)
    torch.testing.assert_close(out.hidden_states, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.cls_attention, weights[:, 0, 1:].reshape(2, 3, 16), atol=1e-5, rtol=0)


def test_open_clip_and_official_state_dict_paths_give_identical_outputs(tmp_path):
    visual = _tiny_open_clip_visual()
    a = UMTTeacher.from_open_clip(visual, num_return_layers=2)
    sd = visual.state_dict()
    sd["conv1.weight"] = sd["conv1.weight"].unsqueeze(2)  # the official Conv3d layout (W, 3, 1, p, p)
    b = UMTTeacher.from_official_state_dict(sd, num_heads=HEADS, num_return_layers=2)
    video = _video()
    oa, ob = a(video), b(video)
    assert torch.equal(oa.hidden_states, ob.hidden_states) and torch.equal(oa.cls_attention, ob.cls_attention)
    # The teacher owns its weights: training the source model afterwards does not move the targets.
    with torch.no_grad():
        visual.proj.mul_(2.0)
        sd["proj"].mul_(2.0)
    assert torch.equal(a(video).hidden_states, oa.hidden_states)
    assert torch.equal(b(video).hidden_states, oa.hidden_states)


def test_open_clip_by_name_loads_local_checkpoint_and_requires_weights(tmp_path):
    import open_clip

    cfg = {"embed_dim": OUT, "quick_gelu": True,
           "vision_cfg": {"image_size": SIZE, "layers": 2, "width": WIDTH, "patch_size": PATCH, "head_width": 8},
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
    (tmp_path / "umt-test-tiny.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "umt-test-tiny.json")
    model = _perturb(open_clip.create_model("umt-test-tiny"))
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    loaded = UMTTeacher.from_open_clip("umt-test-tiny", pretrained=str(tmp_path / "tiny.pt"), num_return_layers=2)
    reference = UMTTeacher.from_open_clip(model, num_return_layers=2)
    video = _video()
    assert torch.equal(loaded(video).hidden_states, reference(video).hidden_states)
    assert loaded.vision.act == "quick_gelu"
    random = UMTTeacher.from_open_clip("umt-test-tiny", random_init=True, num_return_layers=2)
    assert random(video).hidden_states.shape == (2, 2, 48, OUT)
    with pytest.raises(ValueError, match="pretrained=None, random_init=False"):
        UMTTeacher.from_open_clip("umt-test-tiny")
    with pytest.raises(ValueError, match="random_init=True"):
        UMTTeacher.from_open_clip("umt-test-tiny", pretrained=str(tmp_path / "tiny.pt"), random_init=True)
    with pytest.raises(ValueError, match="image tower"):
        UMTTeacher.from_open_clip(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="its own weights are used"):
        UMTTeacher.from_open_clip(model, pretrained="openai")


def test_preset_clip_b16_is_the_official_teacher_architecture():
    teacher = UMTTeacher.from_preset("clip_b16", random_init=True)
    assert teacher.return_index == list(range(6, 12)) and teacher.image_size == 224
    assert teacher.output_dim == 512 and teacher.num_patches == 196 and teacher.vision.act == "quick_gelu"
    out = teacher(torch.randn(1, 1, 3, 112, 112))  # resized to 224 -> 14 x 14 tokens
    assert out.hidden_states.shape == (6, 1, 196, 512) and out.cls_attention.shape == (1, 1, 196)
    with pytest.raises(ValueError, match="clip_b16"):
        UMTTeacher.from_preset("clip_b32", random_init=True)


# ------------------------------------------------------------------------------------------------ transformers


def _tiny_hf_config(**kw):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=WIDTH, intermediate_size=4 * WIDTH, num_hidden_layers=LAYERS,
                            num_attention_heads=HEADS, image_size=SIZE, patch_size=PATCH, projection_dim=OUT, **kw)


def test_transformers_backend_matches_its_eager_output_attentions(tmp_path):
    from transformers import CLIPVisionModelWithProjection

    torch.manual_seed(0)
    hf = _perturb(CLIPVisionModelWithProjection(_tiny_hf_config())).eval()
    hf.set_attn_implementation("eager")
    teacher = UMTTeacher.from_transformers(hf, num_return_layers=3)
    video = _video()
    with torch.no_grad():
        o = hf(pixel_values=video.flatten(0, 1), output_hidden_states=True, output_attentions=True)
    post = hf.vision_model.post_layernorm
    ref = torch.stack([hf.visual_projection(post(o.hidden_states[i + 1][:, 1:])) for i in teacher.return_index])
    out = teacher(video)
    torch.testing.assert_close(out.hidden_states, ref.reshape(3, 2, 48, OUT), atol=1e-5, rtol=0)
    ref_attention = o.attentions[-1][:, :, 0, 1:].mean(1).reshape(2, 3, 16)  # (N, heads, L, L) -> row 0
    torch.testing.assert_close(out.cls_attention, ref_attention, atol=1e-5, rtol=0)
    # The same weights from a saved directory (the hub-id path) give the same teacher.
    hf.save_pretrained(tmp_path / "clip")
    again = UMTTeacher.from_transformers(str(tmp_path / "clip"), num_return_layers=3)
    torch.testing.assert_close(again(video).hidden_states, out.hidden_states, atol=0, rtol=0)


def test_transformers_full_clip_model_and_its_saved_directory(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=64,
                bos_token_id=0, eos_token_id=1, pad_token_id=1)
    torch.manual_seed(0)
    config = CLIPConfig(vision_config=_tiny_hf_config().to_dict(), text_config=text, projection_dim=12)
    clip = _perturb(CLIPModel(config))
    teacher = UMTTeacher.from_transformers(clip.eval(), num_return_layers=2)
    with torch.no_grad():
        hidden = clip.vision_model(pixel_values=_video().flatten(0, 1), output_hidden_states=True).hidden_states
        ref = clip.visual_projection(clip.vision_model.post_layernorm(hidden[-1][:, 1:])).reshape(2, 48, 12)
    out = teacher(_video()).hidden_states
    torch.testing.assert_close(out[-1], ref, atol=1e-5, rtol=0)
    # projection_dim sits on the outer CLIPConfig of a full checkpoint; loading the directory must find it.
    clip.save_pretrained(tmp_path / "clip")
    loaded = UMTTeacher.from_transformers(tmp_path / "clip", num_return_layers=2)
    assert torch.equal(loaded(_video()).hidden_states, out)


def test_transformers_config_builds_random_and_vision_model_has_no_projection():
    from transformers import CLIPVisionModel

    assert UMTTeacher.from_transformers(_tiny_hf_config(), num_return_layers=2).output_dim == OUT
    torch.manual_seed(0)
    hf = CLIPVisionModel(_tiny_hf_config()).eval()
    teacher = UMTTeacher.from_transformers(hf, num_return_layers=1)
    with torch.no_grad():
        ref = hf(pixel_values=_video().flatten(0, 1)).last_hidden_state[:, 1:]
    # CLIPVisionModel applies post_layernorm to the pooled token only; the teacher applies it to patch tokens.
    ref = hf.post_layernorm(ref).reshape(1, 2, 48, WIDTH)
    torch.testing.assert_close(teacher(_video()).hidden_states, ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="hidden_act"):
        UMTTeacher.from_transformers(_tiny_hf_config(hidden_act="relu"))
    hf.embeddings.class_embedding.ds_id = 0  # what deepspeed.zero.Init leaves on partitioned weights
    with pytest.raises(ValueError, match="ZeRO-3"):
        UMTTeacher.from_transformers(hf)


# ------------------------------------------------------------------------------------------------ official layout


def _official_layout_state_dict(tower):
    sd = {k: v.clone() for k, v in tower.state_dict().items()}
    sd["conv1.weight"] = sd["conv1.weight"].unsqueeze(2)
    return sd


def test_official_state_dict_wrappers_prefixes_and_files_all_load_the_same(tmp_path):
    from safetensors.torch import save_file

    tower = _tiny_tower()
    sd = _official_layout_state_dict(tower)
    ref = UMTTeacher(tower, num_return_layers=2)(_video()).hidden_states
    student_key = {"vision_encoder.encoder.norm.weight": torch.ones(3)}
    stage2 = {"model": {**{f"clip_teacher.{k}": v for k, v in sd.items()}, **student_key}}
    full_clip = {**{f"visual.{k}": v for k, v in sd.items()}, "text_projection": torch.ones(2, 2)}
    torch.save(sd, tmp_path / "vit.pth")
    save_file({**sd, "conv1.weight": sd["conv1.weight"].contiguous()}, str(tmp_path / "vit.safetensors"))
    for source in (sd, stage2, full_clip, tmp_path / "vit.pth", str(tmp_path / "vit.safetensors")):
        teacher = UMTTeacher.from_official_state_dict(source, num_heads=HEADS, num_return_layers=2)
        assert torch.equal(teacher(_video()).hidden_states, ref), source if isinstance(source, str) else type(source)


def test_official_state_dict_resizes_positions_for_a_new_resolution():
    tower = _tiny_tower()
    teacher = UMTTeacher.from_official_state_dict(_official_layout_state_dict(tower), image_size=24, num_heads=HEADS,
                                                  num_return_layers=2)
    assert teacher.image_size == 24 and teacher.num_patches == 9
    expected = resize_positional_embedding(tower.positional_embedding, 3)
    torch.testing.assert_close(teacher.vision.positional_embedding, expected)
    assert teacher(_video(H=SIZE, W=SIZE)).hidden_states.shape == (2, 2, 3 * 9, OUT)


def test_from_preset_with_a_local_file_checks_the_architecture(tmp_path):
    torch.save(_official_layout_state_dict(_tiny_tower()), tmp_path / "vit.pth")
    with pytest.raises(ValueError, match="preset 'clip_b16' expects width 768, patch 16"):
        UMTTeacher.from_preset("clip_b16", pretrained=str(tmp_path / "vit.pth"))


# ------------------------------------------------------------------------------------------------ errors


def test_invalid_inputs_raise_value_errors_naming_the_argument():
    teacher = UMTTeacher(_tiny_tower(), num_return_layers=2)
    with pytest.raises(ValueError, match="pixel_values"):
        teacher(torch.randn(2, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match="pixel_values"):
        teacher(torch.randn(1, 2, 4, SIZE, SIZE))
    for k in (0, LAYERS + 1):
        with pytest.raises(ValueError, match="num_return_layers"):
            UMTTeacher(_tiny_tower(), num_return_layers=k)
    with pytest.raises(ValueError, match="return_interval"):
        UMTTeacher(_tiny_tower(), num_return_layers=3, return_interval=2)
    with pytest.raises(ValueError, match="autocast_dtype"):
        UMTTeacher(_tiny_tower(), autocast_dtype=torch.float64, num_return_layers=2)
    with pytest.raises(ValueError, match="act"):
        _tiny_tower(act="relu")
    sd = _official_layout_state_dict(_tiny_tower())
    with pytest.raises(ValueError, match="temporal kernel 2"):
        two_frame_conv = sd["conv1.weight"].repeat(1, 1, 2, 1, 1)
        UMTTeacher.from_official_state_dict({**sd, "conv1.weight": two_frame_conv}, num_heads=HEADS)
    with pytest.raises(ValueError, match="exactly one CLIP visual encoder"):
        UMTTeacher.from_official_state_dict({f"{tower}.{k}": v for k, v in sd.items() for tower in ("a", "b")})
    with pytest.raises(ValueError, match="missing"):
        UMTTeacher.from_official_state_dict({k: v for k, v in sd.items() if k != "ln_post.bias"}, num_heads=HEADS)
    with pytest.raises(ValueError, match="num_heads=None"):
        UMTTeacher.from_official_state_dict(sd)
    with pytest.raises(ValueError, match="square"):
        resize_positional_embedding(torch.randn(1 + 15, 8), 3)
