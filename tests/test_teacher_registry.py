"""build_teacher / register_teacher: every built-in name, saved transformers towers loaded offline, the grid rule."""

import pytest
import torch
from test_teacher import _video
from test_teacher_transformers import COMMON, PATCH, REGISTERS, SIZE, WIDTH, _tiny
from torch import nn

from modeling_umt.teachers import (
    ImageTeacher,
    TransformersTeacher,
    UMTTeacher,
    build_teacher,
    register_teacher,
    registered_teachers,
    registry,
)

HW = (SIZE // PATCH) ** 2  # the student of these tests: 32 px frames, patch 8 -> a 4 x 4 grid


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Tiny towers saved as a user would: save_pretrained into a folder, loaded back by path only."""
    root = tmp_path_factory.mktemp("towers")
    dirs = {}
    for family in ("clip", "clip-no-projection", "siglip", "dinov2-registers"):
        dirs[family] = root / family
        _tiny(family).save_pretrained(dirs[family])
    return dirs


@pytest.mark.parametrize("family", ["clip-no-projection", "siglip", "dinov2-registers"])
def test_saved_towers_load_through_hf_and_match_the_model_in_memory(saved, family):
    teacher = build_teacher(f"hf:{saved[family]}", num_return_layers=2, image_size=SIZE, patch_size=PATCH)
    assert isinstance(teacher, UMTTeacher if family.startswith("clip") else TransformersTeacher)
    prefix = {"clip-no-projection": 1, "siglip": 0, "dinov2-registers": 1 + REGISTERS}[family]
    assert teacher.num_prefix_tokens == prefix and teacher.num_patches == HW and teacher.output_dim == WIDTH
    video = _video(B=2, T=3)
    out = teacher(video)
    assert out.hidden_states.shape == (2, 2, 3 * HW, WIDTH) and out.cls_attention.shape == (2, 3, HW)
    reference = TransformersTeacher(_tiny(family), num_return_layers=2)(video)
    torch.testing.assert_close(out.hidden_states, reference.hidden_states, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.cls_attention, reference.cls_attention, atol=1e-6, rtol=0)
    sums = out.cls_attention.sum(-1)
    if prefix:  # the class token's own share (and the registers') is dropped
        assert (sums < 1).all() and (sums > 0).all()
    else:  # SigLIP's pooling-head probe has no prefix tokens to drop
        torch.testing.assert_close(sums, torch.ones(2, 3), atol=1e-6, rtol=0)
    again = build_teacher(f"hf:{saved[family]}", num_return_layers=2, image_size=SIZE, patch_size=PATCH)(video)
    assert torch.equal(again.hidden_states, out.hidden_states) and torch.equal(again.cls_attention, out.cls_attention)


def test_hf_clip_keeps_its_projection_and_transformers_prefix_uses_the_wrapper(saved):
    fast = build_teacher(f"hf:{saved['clip']}", num_return_layers=2, image_size=SIZE, patch_size=PATCH)
    generic = build_teacher(f"transformers:{saved['clip']}", num_return_layers=2, image_size=SIZE, patch_size=PATCH)
    assert isinstance(fast, UMTTeacher) and isinstance(generic, TransformersTeacher)
    assert fast.output_dim == generic.output_dim == COMMON["hidden_size"] // 2  # projection_dim 16
    video = _video()
    torch.testing.assert_close(fast(video).hidden_states, generic(video).hidden_states, atol=1e-5, rtol=0)


def test_grid_rule_runs_hf_teachers_at_the_students_token_grid(saved):
    # A 64 px student with patch 16 has a 4 x 4 grid; the patch-8 teacher (trained at 32 px) then runs at 32 px.
    same = build_teacher(f"hf:{saved['dinov2-registers']}", num_return_layers=1, image_size=64, patch_size=16)
    assert same.image_size == SIZE and same.num_patches == HW
    # A 64 px student with patch 8 has 8 x 8 tokens: the teacher runs at 64 px, positions interpolated.
    larger = build_teacher(f"hf:{saved['siglip']}", num_return_layers=1, image_size=64, patch_size=8)
    assert larger.image_size == 64 and larger.num_patches == 64
    assert larger(torch.randn(1, 2, 3, 64, 64)).cls_attention.shape == (1, 2, 64)
    clip = build_teacher(f"hf:{saved['clip']}", num_return_layers=1, image_size=64, patch_size=8)
    assert clip.image_size == 64 and clip.vision.positional_embedding.shape[0] == 1 + 64
    with pytest.raises(ValueError, match=r"image_size=30 must be a multiple of patch_size=8 \(the student's grid\)"):
        build_teacher(f"hf:{saved['siglip']}", image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="pretrained='x.pt' does not apply"):
        build_teacher(f"hf:{saved['siglip']}", pretrained="x.pt")


@pytest.mark.parametrize("name", ["tiny-random", "tiny-random-clip", "tiny-random-siglip", "tiny-random-dinov2"])
def test_tiny_random_teachers_are_seeded_on_the_students_grid_and_leave_the_rng_alone(name):
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    a = build_teacher(name, num_return_layers=2, image_size=SIZE, patch_size=PATCH)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's random stream is not disturbed
    b = build_teacher(name, num_return_layers=2, image_size=SIZE, patch_size=PATCH)
    assert isinstance(a, ImageTeacher) and a.num_patches == HW and a.output_dim == 128
    video = _video()
    oa, ob = a(video), b(video)
    assert torch.equal(oa.hidden_states, ob.hidden_states) and torch.equal(oa.cls_attention, ob.cls_attention)
    assert oa.cls_attention.shape == (2, 3, HW)
    assert a.num_prefix_tokens == {"tiny-random-siglip": 0, "tiny-random-dinov2": 5}.get(name, 1)


def test_register_teacher_exact_and_prefix_names():
    calls = []

    def factory(source, pretrained, image_size, patch_size, **options):
        calls.append((source, pretrained, image_size, patch_size, options))
        return build_teacher("tiny-random", image_size=image_size, patch_size=patch_size, **options)

    register_teacher("test-exact", factory)
    register_teacher("test-zoo:", factory)
    try:
        assert {"test-exact", "test-zoo:"} <= set(registered_teachers())
        teacher = build_teacher("test-exact", num_return_layers=2, image_size=SIZE, patch_size=PATCH)
        assert isinstance(teacher, UMTTeacher) and teacher.return_index == [4, 5]
        build_teacher("test-zoo:some/model", pretrained="weights.pt", num_return_layers=1, normalize=True)
        assert calls[0][:4] == ("test-exact", None, SIZE, PATCH)
        assert calls[1][:4] == ("some/model", "weights.pt", 224, 16)
        assert calls[1][4] == dict(num_return_layers=1, autocast_dtype=None, normalize=True)
        with pytest.raises(ValueError, match="already registered"):
            register_teacher("test-exact", factory)
        register_teacher("test-exact", factory, replace=True)
    finally:
        registry._REGISTRY.pop("test-exact")
        registry._REGISTRY.pop("test-zoo:")


def test_unknown_names_and_misplaced_arguments_raise_value_errors():
    with pytest.raises(ValueError, match=r"teacher='no-such-teacher' is not a registered teacher.*'clip_b16'.*'hf:'"):
        build_teacher("no-such-teacher")
    with pytest.raises(ValueError, match="pretrained='openai' does not apply"):
        build_teacher("tiny-random", pretrained="openai")
    with pytest.raises(ValueError, match="name=''"):
        register_teacher("", lambda *a, **k: None)
    with pytest.raises(ValueError, match="factory="):
        register_teacher("test-not-callable", 3)
    with pytest.raises(ValueError, match="image_size=30 must be a multiple of the teacher's patch_size=8"):
        build_teacher("tiny-random-siglip", image_size=30, patch_size=8)


def test_open_clip_names_bare_and_prefixed_reach_open_clip():
    # No weights can be downloaded here: open_clip's own loader is reached and asks for them.
    for name in ("ViT-B-16", "open_clip:ViT-B-16"):
        with pytest.raises(ValueError, match="pretrained=None, random_init=False"):
            build_teacher(name)
    teacher = build_teacher("clip_b16", random_init=True, num_return_layers=1)
    assert isinstance(teacher, UMTTeacher) and teacher.image_size == 224 and teacher.num_prefix_tokens == 1


def test_teachers_are_modules_the_trainers_can_move_and_freeze():
    teacher = build_teacher("tiny-random-dinov2", num_return_layers=1, image_size=SIZE, patch_size=PATCH)
    assert isinstance(teacher, nn.Module) and teacher.to("cpu").eval() is teacher
    assert not any(p.requires_grad for p in teacher.parameters())
