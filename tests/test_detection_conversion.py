"""Official AVA detection checkpoints (patch_embed, blocks, norm, head; no fc_norm, no pos_embed) <-> ours through the
conversion table and its CLI, on tiny models built by hand from the key names (parity with the official model itself:
tests/test_detection_official_parity.py)."""

from __future__ import annotations

import argparse

import pytest
import torch
from transformers import AutoModel

from modeling_umt import UMTForVideoActionDetection
from modeling_umt.conversion import ConversionError, convert_state_dict, detect_family, to_official_state_dict
from modeling_umt.conversion.cli import main
from test_conversion import C, HEADS, official_classifier_sd

NUM_ACTIONS = 7


def official_detection_sd(seed: int = 3) -> dict[str, torch.Tensor]:
    sd = {k: v for k, v in official_classifier_sd(num_labels=NUM_ACTIONS, seed=seed).items()
          if not k.startswith("fc_norm.")}
    g = torch.Generator().manual_seed(seed + 1)
    sd.update({"norm.weight": 1 + 0.1 * torch.randn(C, generator=g), "norm.bias": torch.randn(C, generator=g)})
    return sd


def test_detection_checkpoints_are_their_own_family_and_classifiers_stay_classifiers():
    assert detect_family(official_detection_sd()).name == "ava-detection"
    assert detect_family(official_classifier_sd()).name == "classifier"


def test_cli_converts_an_official_training_checkpoint_that_reloads_with_automodel(tmp_path, capsys):
    sd = official_detection_sd()
    ckpt = tmp_path / "ava_b16.pth"
    torch.save({"model": sd, "epoch": 29, "args": argparse.Namespace(model="vit_base_patch16_224")}, ckpt)
    out = tmp_path / "hf"
    assert main(["--checkpoint", str(ckpt), "--output_dir", str(out), "--num_attention_heads", str(HEADS),
                 "--num_frames", "4", "--image_size", "32"]) == 0
    printed = capsys.readouterr().out
    assert "ava-detection" in printed and "position table reference = 4 frames x 2^2" in printed
    model = AutoModel.from_pretrained(out)
    assert isinstance(model, UMTForVideoActionDetection)
    assert torch.equal(model.umt.layernorm.weight, sd["norm.weight"])
    assert torch.equal(model.classifier.weight, sd["head.weight"])
    assert model.config.num_labels == NUM_ACTIONS
    assert (model.config.pos_embed_reference_frames, model.config.reference_grid) == (4, 2)
    q, k, v = (getattr(model.umt.encoder.layer[1].attention, n).weight for n in ("query", "key", "value"))
    assert torch.equal(torch.cat([q, k, v]), sd["blocks.1.attn.qkv.weight"])
    assert torch.equal(model.umt.encoder.layer[1].attention.query.bias, sd["blocks.1.attn.q_bias"])


def test_round_trip_official_to_ours_to_official_is_exact():
    sd = official_detection_sd()
    config, ours = convert_state_dict(sd, num_attention_heads=HEADS, num_frames=8, image_size=32)
    model = UMTForVideoActionDetection(config)
    missing, unexpected = model.load_state_dict(ours, strict=False)
    assert (missing, unexpected) == ([], [])
    back = to_official_state_dict(model)
    assert sorted(back) == sorted(sd)
    assert all(torch.equal(back[key], value) for key, value in sd.items())


def test_a_detection_checkpoint_with_a_stray_key_is_refused_naming_it():
    sd = official_detection_sd()
    sd["fc_norm.bias"] = torch.zeros(C)  # half a classifier: matches neither family's key set
    with pytest.raises(ConversionError):
        convert_state_dict(sd, num_attention_heads=HEADS, num_frames=8, image_size=32)
