"""Numerical parity of `UMTForVideoActionDetection` with the official AVA model (OpenGVLab/unmasked_teacher,
single_modality/action_detection, commit 4fb4049), on random weights.

Runs only when UMT_OFFICIAL_REPO points at a checkout of the official repository (its action-detection
`modeling_finetune.py` needs timm, and its `alphaction` package); skipped otherwise. The official model gets seeded
random weights (biases and norms included), goes through our converter, and both sides run in float32 eval mode on
the same non-square clip and the same person boxes:

  (a) tiny ViT (patch 16, 8 frames, 64 px reference, 64 x 112 input): logits, ROI features, loss;
  (b) B/16 width, 2 blocks, 8 x 256 x 464 (an AVA test frame after the official resize and padding): logits, loss.

The official eval forward enlarges its boxes (`BoxList.extend((0.1, 0.05))`) inside the model; ours receives boxes
enlarged by the data code (`processors.detection.extend_boxes`), so the comparison also checks that function. The
official loss is `engine_for_finetuning.train_class_batch` (BCE-with-logits mean x number of boxes): that one function
is compiled from the official file's syntax tree, since importing the whole engine pulls in the AVA data pipeline and
its dependencies (yacs, tensorboardX, `torch._six`). `pytest -s` prints every max |diff|.
"""

from __future__ import annotations

import ast
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

from modeling_umt.conversion import build_model, convert_state_dict
from processors.detection import extend_boxes

OFFICIAL_REPO = os.environ.get("UMT_OFFICIAL_REPO")
if not OFFICIAL_REPO:
    pytest.skip("set UMT_OFFICIAL_REPO=/path/to/unmasked_teacher to compare with the official code", allow_module_level=True)

ATOL = 1e-4


def record(case: str, quantity: str, a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"{case} / {quantity}: shapes {tuple(a.shape)} vs {tuple(b.shape)}"
    diff = (a.float() - b.float()).abs().max().item()
    print(f"[detection parity] {case:<44} {quantity:<28} max|diff| = {diff:.3e}")
    return diff


@pytest.fixture(scope="module")
def official():
    """The official action-detection `modeling_finetune`, `BoxList` and `train_class_batch`, imported with the
    action_detection folder on sys.path (for `alphaction`) and timm's `register_model` as a no-op."""
    timm_registry = pytest.importorskip("timm.models.registry", reason="the official code imports timm")
    root = Path(OFFICIAL_REPO) / "single_modality" / "action_detection"
    if not (root / "modeling_finetune.py").is_file():
        pytest.fail(f"UMT_OFFICIAL_REPO={OFFICIAL_REPO!r} has no single_modality/action_detection/modeling_finetune.py")
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    original = timm_registry.register_model
    timm_registry.register_model = lambda fn: fn
    try:
        finetune = importlib.import_module("modeling_finetune")
        boxes = importlib.import_module("alphaction.structures.bounding_box")
        utils = importlib.import_module("alphaction.modeling.utils")
        tree = ast.parse((root / "engine_for_finetuning.py").read_text())
        (fn,) = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "train_class_batch"]
        namespace = {"torch": torch, "F": torch.nn.functional, "cat": utils.cat}
        exec(compile(ast.Module(body=[fn], type_ignores=[]), "engine_for_finetuning.py", "exec"), namespace)
    finally:
        timm_registry.register_model = original
        sys.path.remove(str(root))
    engine = types.SimpleNamespace(train_class_batch=namespace["train_class_batch"])
    yield types.SimpleNamespace(finetune=finetune, engine=engine, BoxList=boxes.BoxList)
    for name in set(sys.modules) - before:  # the official `modeling_finetune`, `alphaction` must not linger
        del sys.modules[name]


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Seeded re-init: matrices N(0, 0.02), norm weights 1 + N(0, 0.1), biases N(0, 0.05); the head N(0, 0.5) so the
    logits are far from zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name == "head.weight":
                p.copy_(0.5 * noise)
            elif p.ndim > 1:
                p.copy_(0.02 * noise)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.05 * noise)
    return module.eval()


def compare(official, case: str, width: int, depth: int, heads: int, image_size: int, hw: tuple[int, int],
            frame_size: tuple[int, int], num_classes: int = 80):
    with contextlib.redirect_stdout(io.StringIO()):
        ref = official.finetune.VisionTransformer(
            img_size=image_size, patch_size=16, embed_dim=width, depth=depth, num_heads=heads, mlp_ratio=4,
            qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), all_frames=8, tubelet_size=1,
            num_classes=num_classes, init_scale=0.001,
        )
    randomize_(ref, seed=width + depth)
    config, state = convert_state_dict(ref.state_dict(), num_attention_heads=heads, num_frames=8,
                                       image_size=image_size, log=lambda message: None)
    ours, missing, unexpected = build_model(config, state)
    assert not missing and not unexpected, (missing, unexpected)
    ours.eval()

    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 8, *hw, generator=g)  # official layout (B, C, T, H, W); frame_size <= hw is unpadded
    fh, fw = frame_size
    raw = [torch.tensor([[5.0, 7.0, 60.0, 50.0], [0.0, 0.0, fw - 1.0, fh - 1.0], [30.5, 12.25, 90.0, 63.0]]),
           torch.tensor([[fw * 0.5, fh * 0.25, fw * 0.9, fh * 0.95]])]
    labels = [torch.randint(0, 2, (len(b), num_classes), generator=g, dtype=torch.uint8) for b in raw]
    box_lists = []
    for b, lab in zip(raw, labels):
        box_list = official.BoxList(b.clone(), (fw, fh), mode="xyxy")
        box_list.add_field("labels", lab)
        box_lists.append(box_list)
    with torch.no_grad():
        ref_logits = ref(x, box_lists)  # eval: boxes extended inside the official model
        ref_loss, _ = official.engine.train_class_batch(ref, x, box_lists)
        out = ours(x.permute(0, 2, 1, 3, 4), [extend_boxes(b, (fh, fw)) for b in raw],
                   labels=torch.cat(labels).float())
    assert ref_logits.abs().max() > 0.05  # not two near-zero tensors
    assert record(case, "logits (boxes x classes)", out.logits, ref_logits) <= ATOL
    assert record(case, "loss", out.loss, ref_loss) <= ATOL


def test_tiny_non_square(official):
    compare(official, "(a) tiny 8x64x112, ref 64 px", width=64, depth=2, heads=4, image_size=64, hw=(64, 112),
            frame_size=(64, 100))


def test_b16_two_blocks_ava_test_frame(official):
    compare(official, "(b) B/16 width, 2 blocks, 8x256x464", width=768, depth=2, heads=12, image_size=224,
            hw=(256, 464), frame_size=(256, 455))
