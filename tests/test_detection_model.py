"""`UMTForVideoActionDetection`: the official AVA ROI head on tiny models (no official code needed here; the parity
with the official model is tests/test_detection_official_parity.py)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import torch.nn.functional as F
import torchvision
from transformers import AutoModel

from modeling_umt import UMTConfig, UMTDetectionConfig, UMTForVideoActionDetection
from modeling_umt.losses import action_detection_loss
from modeling_umt.positions import build_position_embeddings


def tiny_detection_config(**overrides) -> UMTDetectionConfig:
    """4 frames, patch 8, reference layout 4 x 2 x 2 (16 px square), 5 actions."""
    kwargs = dict(image_size=16, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=37, pos_embed_reference_frames=4,
                  pos_embed_reference_grid=2, num_labels=5)
    kwargs.update(overrides)
    return UMTDetectionConfig(**kwargs)


def tiny_detector(seed: int = 0, **overrides) -> UMTForVideoActionDetection:
    torch.manual_seed(seed)
    model = UMTForVideoActionDetection(tiny_detection_config(**overrides)).eval()
    with torch.no_grad():  # a non-trivial head (its init is x 0.001) and final norm
        model.classifier.weight.normal_(0, 0.5)
        model.classifier.bias.normal_(0, 0.1)
        model.umt.layernorm.weight.normal_(1, 0.1)
    return model


BOXES = [torch.tensor([[0.0, 0.0, 15.0, 20.0], [10.0, 4.0, 38.5, 23.0]]), torch.tensor([[3.0, 2.0, 12.0, 14.0]])]


def test_logits_are_roi_align_max_pool_linear_of_time_averaged_final_norm_tokens():
    model = tiny_detector()
    x = torch.randn(2, 4, 3, 24, 40)  # non-square: 3 x 5 tokens per frame
    out = model(x, BOXES, output_hidden_states=True)
    assert out.logits.shape == (3, 5)
    tokens = model.umt(x, interpolate_pos_encoding=True).last_hidden_state  # final-norm tokens
    fmap = tokens.view(2, 4, 3, 5, 32).permute(0, 4, 1, 2, 3).mean(2)
    rois = torchvision.ops.roi_align(fmap, BOXES, (7, 7), 1 / 8, 0, aligned=False)
    expected = model.classifier(F.max_pool2d(rois, 7).flatten(1))
    torch.testing.assert_close(out.logits, expected)
    assert len(out.hidden_states) == 3  # embeddings + 2 blocks


def test_position_table_is_resized_per_frame_for_non_square_inputs():
    model = tiny_detector()
    x = torch.randn(1, 4, 3, 24, 40)
    table = build_position_embeddings(4, (3, 5), 32, "interpolated", reference_frames=4, reference_grid=2)
    reference = build_position_embeddings(4, (2, 2), 32, "direct").view(4, 2, 2, 32).permute(0, 3, 1, 2)
    per_frame = F.interpolate(reference, size=(3, 5), mode="bicubic", align_corners=False)  # frame by frame
    torch.testing.assert_close(table, per_frame.permute(0, 2, 3, 1).reshape(1, -1, 32))
    seen = {}
    model.umt.embeddings.register_forward_hook(lambda m, i, o: seen.setdefault("emb", o))
    model(x, [torch.tensor([[0.0, 0.0, 8.0, 8.0]])])
    patches = model.umt.embeddings.patch_embeddings(x)
    torch.testing.assert_close(seen["emb"], patches + table)


def test_loss_is_official_bce_mean_times_boxes_and_labels_may_be_a_list():
    model = tiny_detector()
    x = torch.randn(2, 4, 3, 16, 16)
    labels = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 0, 0, 1], [1, 1, 0, 0, 0]], dtype=torch.float32)
    out = model(x, BOXES, labels=labels)
    expected = F.binary_cross_entropy_with_logits(out.logits, labels, reduction="mean") * 3
    torch.testing.assert_close(out.loss, expected)
    listed = model(x, BOXES, labels=[labels[:2], labels[2:]])
    torch.testing.assert_close(listed.loss, out.loss)
    assert action_detection_loss(out.logits[:0], labels[:0]).item() == 0.0
    with pytest.raises(ValueError, match="labels"):
        action_detection_loss(out.logits, labels[:2])


def test_gradients_reach_encoder_and_head():
    model = tiny_detector().train()
    out = model(torch.randn(2, 4, 3, 16, 24), BOXES, labels=torch.ones(3, 5))
    out.loss.backward()
    assert model.classifier.weight.grad.abs().sum() > 0
    assert model.umt.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0


def test_head_init_is_official_scaled_trunc_normal_and_no_fc_norm():
    torch.manual_seed(0)
    model = UMTForVideoActionDetection(tiny_detection_config(hidden_size=64, num_attention_heads=4, num_labels=80))
    std = model.classifier.weight.std().item()
    assert 0.8 * 0.02 * 0.001 < std < 1.2 * 0.02 * 0.001  # N(0, 0.02) x init_scale 0.001
    assert model.classifier.bias.abs().max() == 0
    assert model.umt.pooler is None and model.umt.layernorm is not None
    names = [n for n, _ in model.named_modules()]
    assert not any("dropout" in n and "classifier" in n for n in names)


def test_a_plain_umt_config_becomes_the_detection_type_without_touching_the_callers():
    config = UMTConfig(**{k: v for k, v in tiny_detection_config().to_dict().items()
                          if k in UMTConfig.__dataclass_fields__ and k != "use_final_norm"})
    assert not config.use_final_norm
    model = UMTForVideoActionDetection(config)
    assert isinstance(model.config, UMTDetectionConfig) and model.config.use_final_norm
    assert not config.use_final_norm


def test_boxes_are_checked():
    model = tiny_detector()
    x = torch.randn(2, 4, 3, 16, 16)
    with pytest.raises(ValueError, match="list of 2"):
        model(x, BOXES[:1])
    with pytest.raises(ValueError, match=r"boxes\[1\]"):
        model(x, [BOXES[0], torch.zeros(3)])
    with pytest.raises(ValueError, match="multiples"):
        model(torch.randn(2, 4, 3, 16, 20), BOXES)


def test_save_reload_with_automodel_and_remote_code_files(tmp_path):
    model = tiny_detector()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "umt_detection"
    assert saved["auto_map"] == {"AutoConfig": "configuration_umt.UMTDetectionConfig",
                                 "AutoModel": "modeling_umt_detection.UMTForVideoActionDetection"}
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(reloaded) is UMTForVideoActionDetection
    x = torch.randn(2, 4, 3, 24, 16)
    torch.testing.assert_close(reloaded(x, BOXES).logits, model(x, BOXES).logits)


def test_saved_remote_code_needs_torchvision_only_beyond_the_classifiers_set(tmp_path):
    """The detector's remote code needs `torchvision` (ROIAlign) besides what every UMT model needs -- deliberately,
    as transformers' own SAM3 does; nothing else."""
    from transformers.dynamic_module_utils import get_imports

    tiny_detector().save_pretrained(tmp_path)
    copied = sorted(tmp_path.glob("*.py"))
    assert "modeling_umt_detection.py" in {p.name for p in copied}
    needed = set().union(*(get_imports(path) for path in copied)) - set(sys.stdlib_module_names)
    assert needed <= {"torch", "torchvision", "transformers", "huggingface_hub", "safetensors", "numpy"}, needed
    assert "torchvision" in needed
