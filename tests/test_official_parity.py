"""Numerical parity with the official UMT code (OpenGVLab/unmasked_teacher, commit 4fb4049).

Runs only when UMT_OFFICIAL_REPO points at a checkout of the official repository (it imports
single_modality/models/modeling_finetune.py and modeling_pretrain_umt.py, which need timm); skipped otherwise.
Official models of the released B/16 architecture (tubelet 1) get seeded random weights — biases and norms
included — and go through our converter; both sides then run in float32 eval mode on the same input:

  (a) classifier, 8 frames x 224 px: logits and the pooled (fc_norm) features;
  (b) the position-table interpolation rule at every released non-reference layout, and end to end for a
      16-frame x 224 px classifier (temporal branch, all 12 blocks) and a 16-frame x 384 px classifier (both
      branches; UMT_PARITY_384_DEPTH blocks, default 1, since the official eager attention materialises a
      12 x 9216 x 9216 float32 matrix — 4 GB and ~45 s per block on 2 CPU cores);
  (c) Stage-1 pretraining with a fixed mask: official clip-decoder outputs vs our `student_features`, and the
      official UTA formula vs our `loss`.

`pytest -s` prints the max abs difference of every comparison and a Markdown table at the end (docs/parity.md).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import types
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

from modeling_umt.conversion import build_model, check_position_embeddings, convert_state_dict

OFFICIAL_REPO = os.environ.get("UMT_OFFICIAL_REPO")
if not OFFICIAL_REPO:
    pytest.skip("set UMT_OFFICIAL_REPO=/path/to/unmasked_teacher to compare with the official code", allow_module_level=True)

ATOL = 1e-5
RESULTS: list[tuple[str, str, float]] = []  # (case, quantity, max abs diff)


def record(case: str, quantity: str, a: torch.Tensor | float, b: torch.Tensor | None = None) -> float:
    """Max |a - b| (float32), or `a` itself when it is already that number; printed and kept for the closing table."""
    if b is None:
        diff = float(a)
    else:
        assert a.shape == b.shape, f"{case} / {quantity}: shapes {tuple(a.shape)} vs {tuple(b.shape)}"
        diff = (a.float() - b.float()).abs().max().item()
    RESULTS.append((case, quantity, diff))
    print(f"[parity] {case:<48} {quantity:<34} max|diff| = {diff:.3e}")
    return diff


@pytest.fixture(scope="module", autouse=True)
def _print_table():
    yield
    if RESULTS:
        print("\n| case | quantity | max abs diff |\n| --- | --- | --- |")
        for case, quantity, diff in RESULTS:
            print(f"| {case} | {quantity} | {diff:.2e} |")


@pytest.fixture(scope="module")
def official():
    """The official `modeling_finetune` and `modeling_pretrain_umt` modules, imported from UMT_OFFICIAL_REPO.

    They are loaded as submodules of a synthetic package so that the package `__init__` (which also imports the
    CLIP and VideoMAE files) is not executed, and with timm's `register_model` replaced by a no-op so that the
    official names (`vit_base_patch16_224`, ...) do not overwrite timm's own registry entries.
    """
    timm_registry = pytest.importorskip("timm.models.registry", reason="the official code imports timm")
    models_dir = Path(OFFICIAL_REPO) / "single_modality" / "models"
    for name in ("modeling_finetune.py", "modeling_pretrain_umt.py"):
        if not (models_dir / name).is_file():
            pytest.fail(f"UMT_OFFICIAL_REPO={OFFICIAL_REPO!r} has no single_modality/models/{name}")
    pkg_name = "_umt_official_models"
    pkg = types.ModuleType(pkg_name)
    pkg.__path__ = [str(models_dir)]
    sys.modules[pkg_name] = pkg
    original = timm_registry.register_model
    timm_registry.register_model = lambda fn: fn
    try:
        finetune = importlib.import_module(f"{pkg_name}.modeling_finetune")
        pretrain = importlib.import_module(f"{pkg_name}.modeling_pretrain_umt")
    finally:
        timm_registry.register_model = original
    yield types.SimpleNamespace(finetune=finetune, pretrain=pretrain)
    for name in [n for n in sys.modules if n == pkg_name or n.startswith(pkg_name + ".")]:
        del sys.modules[name]


def quiet(fn, *args, **kwargs):
    """Call official code with its progress prints silenced."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Seeded normal re-init of every parameter (the fixed `pos_embed` excepted): matrices N(0, 0.02), norm weights
    1 + N(0, 0.1), biases (q/v biases included) N(0, 0.05) — so a dropped or misplaced bias shows up."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("pos_embed"):
                continue
            noise = torch.randn(p.shape, generator=g)
            if p.ndim > 1:
                p.copy_(0.02 * noise)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.05 * noise)
    return module.eval()


def official_classifier(official, frames: int, image_size: int, depth: int = 12, num_classes: int = 400):
    """The official `vit_base_patch16_{224,384}` (B/16, tubelet 1), possibly with fewer blocks, random weights."""
    model = quiet(
        official.finetune.VisionTransformer,
        img_size=image_size, patch_size=16, embed_dim=768, depth=depth, num_heads=12, mlp_ratio=4, qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), all_frames=frames, tubelet_size=1, num_classes=num_classes,
        init_scale=0.001,
    )
    return randomize_(model, seed=frames * 1000 + image_size + depth)


def convert(official_model, **kwargs):
    logs: list[str] = []
    config, state = convert_state_dict(official_model.state_dict(), log=logs.append, **kwargs)
    model, missing, unexpected = build_model(config, state)
    assert not missing and not unexpected, (missing, unexpected)
    return model.eval(), logs


def compare_classifier(official, case: str, frames: int, image_size: int, depth: int, batch: int, **convert_kwargs):
    ref = official_classifier(official, frames, image_size, depth)
    ours, _ = convert(ref, **convert_kwargs)  # layout inferred from the stored pos_embed where there is one
    assert (ours.config.num_frames, ours.config.image_hw) == (frames, (image_size, image_size))
    if isinstance(ref.pos_embed, nn.Parameter):  # saved by the official code for non-reference layouts
        diff = check_position_embeddings(ref.pos_embed.detach(), ours.config, atol=ATOL)
        assert record(case, "stored pos_embed vs our table", diff) <= ATOL
    x = torch.randn(batch, 3, frames, image_size, image_size, generator=torch.Generator().manual_seed(7))
    captured = {}
    ref.fc_norm.register_forward_hook(lambda m, i, o: captured.__setitem__("ref", o))
    ours.umt.pooler.register_forward_hook(lambda m, i, o: captured.__setitem__("ours", o))
    with torch.no_grad():
        ref_logits = ref(x)
        ours_logits = ours(pixel_values=x.permute(0, 2, 1, 3, 4)).logits  # ours takes (B, T, C, H, W)
    assert record(case, "logits", ours_logits, ref_logits) <= ATOL
    assert record(case, "pooled features (fc_norm)", captured["ours"], captured["ref"]) <= ATOL
    assert ref_logits.abs().max() > 0.05  # the comparison is not between two near-zero tensors


# ----------------------------------------------------------------------------------------------------------------
# (a) classifier at the reference layout
# ----------------------------------------------------------------------------------------------------------------
def test_classifier_8x224(official):
    compare_classifier(official, "(a) classifier B/16 8x224, batch 2", frames=8, image_size=224, depth=12, batch=2)


# ----------------------------------------------------------------------------------------------------------------
# (b) interpolated position tables
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("frames,image_size", [(16, 224), (8, 384), (16, 384)])
def test_position_table_rule(official, frames, image_size):
    """The official fine-tuning table (`get_sinusoid_encoding_table(..., cur_frame, pre_n_position=1568)`) equals
    ours (`position_embedding_type="interpolated"`), as the converter's pos_embed check sees it."""
    from modeling_umt import UMTConfig

    n = frames * (image_size // 16) ** 2
    table = quiet(official.finetune.get_sinusoid_encoding_table, n, 768, cur_frame=frames, pre_n_position=1568)
    config = UMTConfig(num_frames=frames, image_size=image_size)
    diff = check_position_embeddings(table.detach(), config, atol=ATOL)
    assert record(f"(b) pos_embed table {frames}x{image_size}", "interpolated sin-cos table", diff) <= ATOL
    direct = UMTConfig(num_frames=frames, image_size=image_size, position_embedding_type="direct")
    with pytest.raises(ValueError, match="pos_embed"):  # the other rule really is different at this layout
        check_position_embeddings(table.detach(), direct, atol=ATOL)


def test_classifier_16x224(official):
    compare_classifier(official, "(b) classifier B/16 16x224, batch 1", frames=16, image_size=224, depth=12, batch=1)


def test_classifier_16x384(official):
    depth = int(os.environ.get("UMT_PARITY_384_DEPTH", "1"))
    compare_classifier(
        official, f"(b) classifier B/16 16x384 ({depth} block(s)), batch 1", frames=16, image_size=384, depth=depth,
        batch=1, num_attention_heads=12,
    )


# ----------------------------------------------------------------------------------------------------------------
# (c) Stage-1 pretraining
# ----------------------------------------------------------------------------------------------------------------
def frame_mask(batch: int, frames: int, per_frame: int, keep: int, seed: int) -> torch.Tensor:
    """Bool (B, T * per_frame), True = masked; each frame keeps `keep` tokens chosen by a seeded permutation."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, frames, per_frame, dtype=torch.bool)
    for b in range(batch):
        for t in range(frames):
            mask[b, t, torch.randperm(per_frame, generator=g)[:keep]] = False
    return mask.flatten(1)


def test_pretraining_8x224(official):
    case = "(c) Stage-1 B/16 8x224, 40/196 visible, batch 2"
    ref = quiet(
        official.pretrain.PretrainVisionTransformer,
        img_size=224, patch_size=16, encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12,
        encoder_num_classes=0, mlp_ratio=4, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_frames=8, tubelet_size=1, clip_decoder_embed_dim=768, clip_output_dim=512, clip_norm_type="l2",
        clip_return_layer=6, clip_student_return_interval=1,
    )
    randomize_(ref, seed=3)
    ours, _ = convert(ref)
    assert ours.config.uta_num_layers == 6 and ours.config.uta_output_dim == 512

    b, k = 2, 6
    x = torch.randn(b, 3, 8, 224, 224, generator=torch.Generator().manual_seed(11))
    mask = frame_mask(b, 8, 196, keep=40, seed=5)
    teacher = torch.randn(k, b, 8 * 196, 512, generator=torch.Generator().manual_seed(13))
    teacher = nn.functional.normalize(teacher, dim=-1)  # unit-norm CLIP targets for every token
    with torch.no_grad():
        ref_features = ref(x, mask)  # (K, B, N_vis, 512)
        ref_teacher = teacher[:, ~mask].reshape(k, b, -1, 512)  # the official engine gathers the teacher this way
        ref_loss = (2 - 2 * (ref_features * ref_teacher).sum(-1)).mean()
        out = ours(pixel_values=x.permute(0, 2, 1, 3, 4), bool_masked_pos=mask, teacher_features=teacher)
    assert ref_features.shape == (k, b, 8 * 40, 512)
    assert record(case, "student_features [K,B,N_vis,512]", out.student_features, ref_features) <= ATOL
    assert record(case, "UTA loss", out.loss, ref_loss) <= ATOL
