"""Official checkpoint <-> transformers conversion (modeling_umt/conversion/), single-modality families, on tiny models.

Official-layout state dicts are built here by hand from the key names and shapes of official_umt.md §7 (no official
code is imported); numerical parity with the official code itself is tests/test_official_parity.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForPreTraining, AutoModelForVideoClassification

from modeling_umt import UMTConfig, UMTForPreTraining, UMTForVideoClassification, UMTVideoModel
from modeling_umt.conversion import (
    ConversionError,
    Settings,
    build_model,
    convert_checkpoint,
    convert_state_dict,
    id2label_from_file,
    to_official_state_dict,
    unwrap_state_dict,
)
from modeling_umt.conversion.base import RELEASED_BERT_HEADS, RELEASED_VIT_HEADS, pick_heads
from modeling_umt.conversion.cli import main
from modeling_umt.positions import build_position_embeddings

ROOT = Path(__file__).resolve().parents[1]
C, DEPTH, HEADS, MLP, PATCH = 32, 2, 4, 64, 16  # tiny: width 32, 2 blocks, 4 heads
FRAMES, IMAGE = 2, 32  # 2 frames x 2 x 2 patches unless a test needs a pos_embed layout
LABELS, K, D_T = 5, 2, 16  # classes; aligned layers; teacher width


def official_classifier_sd(num_labels=LABELS, pos_embed=None, qkv_bias=True, seed=0, dtype=torch.float32):
    """A fine-tuned-classifier state dict in the official layout: patch_embed, blocks, fc_norm, head [, pos_embed]."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g).to(dtype)  # noqa: E731
    sd = {"patch_embed.proj.weight": r(C, 3, 1, PATCH, PATCH), "patch_embed.proj.bias": r(C)}
    for i in range(DEPTH):
        p = f"blocks.{i}."
        sd.update({p + "norm1.weight": r(C), p + "norm1.bias": r(C), p + "attn.qkv.weight": r(3 * C, C)})
        if qkv_bias:
            sd.update({p + "attn.q_bias": r(C), p + "attn.v_bias": r(C)})
        sd.update({p + "attn.proj.weight": r(C, C), p + "attn.proj.bias": r(C), p + "norm2.weight": r(C)})
        sd.update({p + "norm2.bias": r(C), p + "mlp.fc1.weight": r(MLP, C), p + "mlp.fc1.bias": r(MLP)})
        sd.update({p + "mlp.fc2.weight": r(C, MLP), p + "mlp.fc2.bias": r(C)})
    sd.update({"fc_norm.weight": r(C), "fc_norm.bias": r(C)})
    sd.update({"head.weight": r(num_labels, C), "head.bias": r(num_labels)})
    if pos_embed is not None:
        sd["pos_embed"] = pos_embed.to(dtype)
    return sd


def official_pretrain_sd(seed=1, dtype=torch.float32):
    """A Stage-1 state dict in the official layout: encoder.* (+ encoder.norm) and clip_decoder.{k}.{head,norm}."""
    backbone = official_classifier_sd(seed=seed, dtype=dtype)
    sd = {f"encoder.{k}": v for k, v in backbone.items() if not k.startswith(("fc_norm.", "head."))}
    g = torch.Generator().manual_seed(seed + 100)
    r = lambda *shape: torch.randn(*shape, generator=g).to(dtype)  # noqa: E731
    sd.update({"encoder.norm.weight": r(C), "encoder.norm.bias": r(C)})
    for k in range(K):
        sd.update({f"clip_decoder.{k}.head.weight": r(D_T, C), f"clip_decoder.{k}.head.bias": r(D_T)})
        sd.update({f"clip_decoder.{k}.norm.weight": r(D_T), f"clip_decoder.{k}.norm.bias": r(D_T)})
    return sd


def pos_table(frames, image_size):
    """The official fine-tuning table for a layout (8x14x14 table resized), as a stored `pos_embed` [1, N, C]."""
    g = image_size // PATCH
    return build_position_embeddings(frames, (g, g), C, rule="interpolated")


def convert(sd, **kwargs):
    kwargs = {"num_attention_heads": HEADS, "num_frames": FRAMES, "image_size": IMAGE, **kwargs}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    config, ours = convert_state_dict(sd, **kwargs)
    model, missing, unexpected = build_model(config, ours)
    assert missing == [] and unexpected == []
    return config, ours, model


def save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


def to_hf(ckpt: Path, out: Path, **kwargs) -> Path:
    """convert_checkpoint for the tiny width (its heads cannot be inferred), silent."""
    return convert_checkpoint(ckpt, out, num_attention_heads=HEADS, log=lambda message: None, **kwargs)


def cli_convert(ckpt: Path, out: Path, *extra: str) -> int:
    return main(["--checkpoint", str(ckpt), "--output_dir", str(out), "--num_attention_heads", str(HEADS), *extra])


def video(frames=FRAMES, image_size=IMAGE, batch=2, seed=0):
    return torch.randn(batch, frames, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# ----------------------------------------------------------------------------------------------------------------
# Mapping
# ----------------------------------------------------------------------------------------------------------------
def test_classifier_keys_map_to_our_modules():
    sd = official_classifier_sd()
    config, ours, model = convert(sd)
    assert config.architectures == ["UMTForVideoClassification"]
    assert isinstance(model, UMTForVideoClassification)
    cfg = model.config
    assert (cfg.num_labels, cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (LABELS, C, DEPTH, MLP)
    assert not cfg.use_final_norm and cfg.position_embedding_type == "interpolated"
    for i in range(DEPTH):
        layer = model.umt.encoder.layer[i].attention
        q, k, v = sd[f"blocks.{i}.attn.qkv.weight"].split(C)
        assert torch.equal(layer.query.weight, q) and torch.equal(layer.key.weight, k)
        assert torch.equal(layer.value.weight, v)
        assert torch.equal(layer.query.bias, sd[f"blocks.{i}.attn.q_bias"])
        assert torch.equal(layer.value.bias, sd[f"blocks.{i}.attn.v_bias"])
        assert layer.key.bias is None  # the official k has no bias
    assert torch.equal(model.umt.pooler.norm.weight, sd["fc_norm.weight"])
    assert torch.equal(model.classifier.bias, sd["head.bias"])
    assert torch.equal(model.umt.embeddings.patch_embeddings.projection.weight, sd["patch_embed.proj.weight"])


def test_fused_qkv_with_zero_k_bias_equals_our_projections():
    """The official attention computes F.linear(x, qkv.weight, cat(q_bias, 0, v_bias)); ours gives the same q, k, v."""
    sd = official_classifier_sd()
    _, _, model = convert(sd)
    x = torch.randn(2, 7, C)
    bias = torch.cat([sd["blocks.1.attn.q_bias"], torch.zeros(C), sd["blocks.1.attn.v_bias"]])
    fused = F.linear(x, sd["blocks.1.attn.qkv.weight"], bias)
    attn = model.umt.encoder.layer[1].attention
    with torch.no_grad():
        ours = torch.cat([attn.query(x), attn.key(x), attn.value(x)], dim=-1)
    torch.testing.assert_close(ours, fused, rtol=1e-5, atol=1e-5)


def test_without_qkv_bias():
    _, ours, model = convert(official_classifier_sd(qkv_bias=False))
    assert model.config.qkv_bias is False and not any(k.endswith(("query.bias", "value.bias")) for k in ours)


def test_pretraining_keys_map_to_our_modules():
    sd = official_pretrain_sd()
    _, ours, model = convert(sd)
    assert isinstance(model, UMTForPreTraining)
    cfg = model.config
    assert cfg.use_final_norm and cfg.position_embedding_type == "direct" and cfg.initializer_type == "xavier_uniform"
    assert (cfg.uta_num_layers, cfg.uta_output_dim, cfg.uta_head_norm_eps, cfg.uta_l2_normalize) == (K, D_T, 1e-6, True)
    assert torch.equal(model.umt.layernorm.weight, sd["encoder.norm.weight"])
    for k in range(K):
        assert torch.equal(model.uta_heads[k].dense.weight, sd[f"clip_decoder.{k}.head.weight"])
        assert torch.equal(model.uta_heads[k].norm.bias, sd[f"clip_decoder.{k}.norm.bias"])
    assert torch.equal(model.umt.encoder.layer[0].attention.value.bias, sd["encoder.blocks.0.attn.v_bias"])


@pytest.mark.parametrize("family", ["classifier", "classifier+pos_embed", "pretraining"])
def test_round_trip_official_to_ours_to_official_is_exact(family):
    if family == "pretraining":
        sd, kw = official_pretrain_sd(), {}
    elif family == "classifier":  # released at the 8 x 14 x 14 reference layout, hence no pos_embed
        sd, kw = official_classifier_sd(), {"num_frames": 8, "image_size": 224}
    else:
        sd, kw = official_classifier_sd(pos_embed=pos_table(16, 48)), {"num_frames": None, "image_size": None}
    _, _, model = convert(sd, **kw)
    back = to_official_state_dict(model)
    assert sorted(back) == sorted(sd)
    for key, value in sd.items():
        assert torch.equal(back[key], value), key


@pytest.mark.parametrize("cls", [UMTForVideoClassification, UMTForPreTraining])
def test_round_trip_ours_to_official_to_ours_is_exact(cls):
    torch.manual_seed(0)
    config = UMTConfig(
        image_size=IMAGE, num_frames=16, hidden_size=C, num_hidden_layers=DEPTH, num_attention_heads=HEADS,
        intermediate_size=MLP, num_labels=3, uta_num_layers=K, uta_output_dim=D_T,
        position_embedding_type="direct" if cls is UMTForPreTraining else "interpolated",
    )
    model = cls(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # non-trivial norms and biases too
            p.normal_()
    official = to_official_state_dict(model)
    assert ("pos_embed" in official) is (cls is UMTForVideoClassification)  # 16 frames != the 8x14x14 reference
    converted, ours = convert_state_dict(official, num_attention_heads=HEADS, num_frames=16, image_size=IMAGE)
    expected = model.state_dict()
    assert sorted(ours) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(ours[key], value), key
    fields = ("num_frames", "image_size", "hidden_size", "num_hidden_layers", "intermediate_size")
    for field in (*fields, "position_embedding_type"):
        assert getattr(converted, field) == getattr(config, field), field


# ----------------------------------------------------------------------------------------------------------------
# Saved directories and Auto classes
# ----------------------------------------------------------------------------------------------------------------
def test_saved_classifier_loads_through_auto_classes(tmp_path):
    sd = official_classifier_sd()
    ckpt = save(sd, tmp_path / "ft.pth")
    out = to_hf(ckpt, tmp_path / "hf", num_frames=FRAMES, image_size=IMAGE)
    assert {"config.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    _, _, reference = convert(sd)
    x = video()
    with torch.no_grad():
        expected = reference(pixel_values=x).logits
        loaded, info = AutoModelForVideoClassification.from_pretrained(out, output_loading_info=True)
        assert isinstance(loaded, UMTForVideoClassification)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
        torch.testing.assert_close(loaded.eval()(pixel_values=x).logits, expected, rtol=0, atol=1e-6)
        encoder, info = AutoModel.from_pretrained(out, output_loading_info=True)
        assert isinstance(encoder, UMTVideoModel) and not info["missing_keys"]
        pooled = encoder.eval()(pixel_values=x).pooler_output
    torch.testing.assert_close(pooled @ sd["head.weight"].T + sd["head.bias"], expected, rtol=0, atol=1e-5)


def test_saved_pretraining_loads_through_auto_classes(tmp_path):
    sd = official_pretrain_sd()
    ckpt = save(sd, tmp_path / "pt.pth")
    out = to_hf(ckpt, tmp_path / "hf", num_frames=FRAMES, image_size=IMAGE)
    _, _, reference = convert(sd)
    x = video(frames=FRAMES)
    mask = torch.tensor([[True, False, False, True, False, True, True, False]] * 2)
    with torch.no_grad():
        expected = reference(pixel_values=x, bool_masked_pos=mask).student_features
        loaded, info = AutoModelForPreTraining.from_pretrained(out, output_loading_info=True)
        assert isinstance(loaded, UMTForPreTraining) and not info["missing_keys"] and not info["unexpected_keys"]
        features = loaded.eval()(pixel_values=x, bool_masked_pos=mask).student_features
        torch.testing.assert_close(features, expected, rtol=0, atol=1e-6)
        encoder = AutoModel.from_pretrained(out)
    assert isinstance(encoder, UMTVideoModel) and encoder.config.use_final_norm
    assert torch.equal(encoder.layernorm.weight, sd["encoder.norm.weight"])


def test_checkpoint_wrappers_give_identical_weights(tmp_path):
    sd = official_classifier_sd()
    wrapped = {
        "bare": sd,
        "model": {"model": sd, "epoch": 3, "args": argparse.Namespace(lr=1e-3)},  # official save_model layout
        "module": {"module": sd, "ds_version": "0.9.0", "global_steps": 10},  # DeepSpeed layout
        "ddp": {f"module.{k}": v for k, v in sd.items()},
    }
    saved = {}
    for name, obj in wrapped.items():
        out = to_hf(save(obj, tmp_path / f"{name}.pth"), tmp_path / name)
        saved[name] = load_file(out / "model.safetensors")
    for name in ("model", "module", "ddp"):
        assert saved[name].keys() == saved["bare"].keys()
        assert all(torch.equal(saved[name][k], saved["bare"][k]) for k in saved["bare"])
    with pytest.raises(ConversionError, match="model_key='module'"):
        unwrap_state_dict({"model": sd, "epoch": 3}, model_key="module")
    assert cli_convert(tmp_path / "module.pth", tmp_path / "explicit", "--model_key", "module") == 0


def test_fp16_checkpoint_becomes_float32_unless_keep(tmp_path):
    sd = official_classifier_sd(dtype=torch.float16, pos_embed=pos_table(16, IMAGE))  # pos_embed rounded to fp16 too
    ckpt = save({"module": sd}, tmp_path / "fp16.pth")
    out = to_hf(ckpt, tmp_path / "fp32")
    weights = load_file(out / "model.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.float32}
    assert torch.equal(weights["classifier.weight"], sd["head.weight"].float())
    kept = load_file(to_hf(ckpt, tmp_path / "keep", dtype="keep") / "model.safetensors")
    assert {v.dtype for v in kept.values()} == {torch.float16}
    assert torch.equal(kept["classifier.weight"], sd["head.weight"])


# ----------------------------------------------------------------------------------------------------------------
# pos_embed
# ----------------------------------------------------------------------------------------------------------------
def test_matching_pos_embed_sets_the_layout_and_is_dropped(tmp_path):
    sd = official_classifier_sd(pos_embed=pos_table(16, 48))  # 16 frames x 3 x 3 patches = 144 tokens
    logs: list[str] = []
    ckpt = save(sd, tmp_path / "f16.pth")
    out = convert_checkpoint(ckpt, tmp_path / "hf", num_attention_heads=HEADS, log=logs.append)
    config = json.loads((out / "config.json").read_text())
    assert (config["num_frames"], config["image_size"]) == (16, 48)
    assert not any("pos" in k for k in load_file(out / "model.safetensors"))
    assert any("pos_embed" in line and "max |diff| = 0" in line for line in logs), logs
    model = AutoModelForVideoClassification.from_pretrained(out)
    torch.testing.assert_close(model.umt.embeddings.position_embeddings, sd["pos_embed"], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "bad", ["direct rule", "noise"], ids=["other-rule", "trained-table"]
)
def test_mismatching_pos_embed_errors_and_writes_nothing(tmp_path, bad, capsys):
    g = 48 // PATCH
    if bad == "direct rule":
        table = build_position_embeddings(16, (g, g), C, rule="direct")
    else:
        table = pos_table(16, 48) + 0.01
    ckpt = save(official_classifier_sd(pos_embed=table), tmp_path / "bad.pth")
    assert cli_convert(ckpt, tmp_path / "hf") == 1
    assert "`pos_embed` differs" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists() and leftovers(tmp_path) == []


def test_pos_embed_layout_conflicting_with_arguments_errors():
    sd = official_classifier_sd(pos_embed=pos_table(16, 48))
    with pytest.raises(ConversionError, match="--num_frames 8"):
        convert_state_dict(sd, num_attention_heads=HEADS, num_frames=8)
    config, _ = convert_state_dict(sd, num_attention_heads=HEADS, image_size=48)
    assert config.num_frames == 16


# ----------------------------------------------------------------------------------------------------------------
# Refusals
# ----------------------------------------------------------------------------------------------------------------
def test_unknown_checkpoint_exits_nonzero_and_writes_nothing(tmp_path, capsys):
    videomae = official_pretrain_sd()  # VideoMAE pretraining: encoder.* plus a pixel decoder, no clip_decoder
    videomae = {k: v for k, v in videomae.items() if not k.startswith("clip_decoder.")}
    videomae["decoder.blocks.0.norm1.weight"] = torch.ones(C)
    videomae["mask_token"] = torch.zeros(1, 1, C)
    videomae["encoder_to_decoder.weight"] = torch.zeros(C, C)
    assert cli_convert(save(videomae, tmp_path / "videomae.pth"), tmp_path / "hf") == 1
    err = capsys.readouterr().err
    assert "unknown keys" in err and "decoder.blocks.0.norm1.weight" in err and "mask_token" in err
    assert not (tmp_path / "hf").exists() and leftovers(tmp_path) == []

    unrelated = {"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.weight": torch.zeros(10, 4)}
    assert cli_convert(save(unrelated, tmp_path / "resnet.pth"), tmp_path / "hf") == 1
    assert "Unrecognised checkpoint" in capsys.readouterr().err and not (tmp_path / "hf").exists()


def test_extra_missing_or_misshapen_keys_are_named():
    sd = official_classifier_sd()
    with pytest.raises(ConversionError, match=r"blocks\.0\.attn\.k_bias"):
        convert_state_dict({**sd, "blocks.0.attn.k_bias": torch.zeros(C)}, num_attention_heads=HEADS)
    with pytest.raises(ConversionError, match=r"missing keys: blocks\.1\.attn\.proj\.bias"):
        missing = {k: v for k, v in sd.items() if k != "blocks.1.attn.proj.bias"}
        convert_state_dict(missing, num_attention_heads=HEADS)
    with pytest.raises(ConversionError, match=r"blocks\.1\.mlp\.fc2\.weight \[32, 63\]"):
        misshapen = {**sd, "blocks.1.mlp.fc2.weight": torch.zeros(C, MLP - 1)}
        convert_state_dict(misshapen, num_attention_heads=HEADS)


def test_architecture_arguments_are_checked():
    sd = official_classifier_sd()
    with pytest.raises(ConversionError, match="--model_size b16"):
        convert_state_dict(sd, model_size="b16")
    with pytest.raises(ConversionError, match="--num_attention_heads"):
        convert_state_dict(sd)  # width 32 is no released width and not a multiple of 64


def test_existing_output_dir_needs_overwrite(tmp_path):
    ckpt = save(official_classifier_sd(), tmp_path / "ft.pth")
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert cli_convert(ckpt, out) == 1 and (out / "keep.txt").exists()
    assert cli_convert(ckpt, out, "--overwrite") == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------------------------------------
# Labels, CLI, reverse
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["txt", "json-list", "json-name-to-id", "json-id-to-name"])
def test_label_file_fills_id2label(tmp_path, kind):
    names = ["abseiling", "air drumming", "answering questions", "applauding", "applying cream"]
    path = tmp_path / ("labels.txt" if kind == "txt" else "labels.json")
    if kind == "txt":
        path.write_text("\n".join(names) + "\n\n")
    elif kind == "json-list":
        path.write_text(json.dumps(names))
    elif kind == "json-name-to-id":
        path.write_text(json.dumps({n: i for i, n in enumerate(names)}))
    else:
        path.write_text(json.dumps({str(i): n for i, n in enumerate(names)}))
    out = to_hf(save(official_classifier_sd(), tmp_path / "ft.pth"), tmp_path / "hf", label_file=path)
    config = AutoModelForVideoClassification.from_pretrained(out).config
    assert config.id2label == dict(enumerate(names)) and config.label2id["air drumming"] == 1


def test_label_file_with_wrong_count_errors(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("a\nb\nc\n")
    with pytest.raises(ConversionError, match="3 labels .* 5 classes"):
        id2label_from_file(path, LABELS)
    ckpt = save(official_classifier_sd(), tmp_path / "ft.pth")
    assert cli_convert(ckpt, tmp_path / "hf", "--label_file", str(path)) == 1
    assert not (tmp_path / "hf").exists()


def test_cli_subprocess_and_reverse_round_trip(tmp_path):
    sd = official_pretrain_sd()
    ckpt = save({"model": sd}, tmp_path / "b16_ptk710_f8_res224.pth")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "modeling_umt.convert_original_checkpoint", "--checkpoint", str(ckpt),
           "--output_dir", str(tmp_path / "hf"), "--num_attention_heads", str(HEADS)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "missing keys: none" in proc.stdout and "unexpected keys: none" in proc.stdout
    assert isinstance(AutoModelForPreTraining.from_pretrained(tmp_path / "hf"), UMTForPreTraining)

    reverse = ["--reverse", "--checkpoint", str(tmp_path / "hf"), "--output_dir", str(tmp_path / "back")]
    assert main([*reverse, "--model_key", "model"]) == 0
    back = torch.load(tmp_path / "back" / "model.pth", weights_only=True)["model"]
    assert sorted(back) == sorted(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


# ----------------------------------------------------------------------------------------------------------------
# Settings: printed with their source, heads never guessed
# ----------------------------------------------------------------------------------------------------------------
def test_tiny_classifier_without_heads_is_refused_instead_of_built_with_width_over_64():
    """Width 64 x 2 blocks is no released size: its head count (4 here) is not in the weights, so it is asked for."""
    config = UMTConfig(image_size=IMAGE, num_frames=16, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=128, num_labels=3)
    official = to_official_state_dict(UMTForVideoClassification(config))
    with pytest.raises(ConversionError, match=r"num_attention_heads.*width 64 x 2 layers is no released size"):
        convert_state_dict(official)
    converted, _ = convert_state_dict(official, num_attention_heads=4)
    assert converted.num_attention_heads == 4


def test_released_sizes_give_the_heads_and_every_setting_is_printed_with_its_source():
    logs: list[str] = []
    settings = Settings({}, None, logs.append)
    assert pick_heads(settings, "num_attention_heads", 768, 12, RELEASED_VIT_HEADS, None, "video ViT") == 12
    assert pick_heads(settings, "text_num_attention_heads", 1024, 24, RELEASED_BERT_HEADS, None, "BERT") == 16
    assert "num_attention_heads = 12 (default: the released video ViT" in logs[0]
    with pytest.raises(ConversionError, match="must be a positive divisor"):
        pick_heads(Settings({"num_attention_heads": 5}, None, logs.append), "num_attention_heads", 768, 12,
                   RELEASED_VIT_HEADS, None, "video ViT")

    logs.clear()
    convert_state_dict(official_classifier_sd(), num_attention_heads=HEADS, log=logs.append)
    printed = "\n".join(logs)
    for line in ("num_attention_heads = 4 (flag)", "num_frames = 8 (default: the released layout",
                 "image_size = 224 (default", "labels = LABEL_0 .. LABEL_4 (default", "drop_path_rate = 0.0"):
        assert line in printed, printed


def test_flags_that_do_not_apply_or_contradict_the_weights_are_errors():
    with pytest.raises(ConversionError, match="--text_pooling.*does not apply to an official fine-tuned classifier"):
        convert_state_dict(official_classifier_sd(), num_attention_heads=HEADS, text_pooling="mean")
    with pytest.raises(ConversionError, match="--label_file.*does not apply to an official Stage-1"):
        convert_state_dict(official_pretrain_sd(), num_attention_heads=HEADS, label_file="labels.txt")


# ----------------------------------------------------------------------------------------------------------------
# Weights that must be refused, each named
# ----------------------------------------------------------------------------------------------------------------
def test_one_misshapen_tensor_is_the_only_key_named():
    sd = official_classifier_sd()
    sd["blocks.0.mlp.fc1.weight"] = torch.zeros(MLP + 8, C)  # the tensor the MLP width used to be read from
    with pytest.raises(ConversionError) as err:
        convert_state_dict(sd, num_attention_heads=HEADS)
    message = str(err.value)
    assert "blocks.0.mlp.fc1.weight [72, 32] (expected [64, 32])" in message
    assert "fc2" not in message and "blocks.1" not in message and "fc1.bias" not in message


@pytest.mark.parametrize("bad", ["nan", "inf", "int64", "bool"])
def test_non_finite_or_integer_weights_are_refused_naming_the_key(bad):
    sd = official_pretrain_sd()
    value = sd["clip_decoder.1.norm.weight"]
    if bad in ("nan", "inf"):
        value = value.clone()
        value[3] = float(bad)
    else:
        value = value.to(getattr(torch, bad))
    sd["clip_decoder.1.norm.weight"] = value
    expected = "non-finite" if bad in ("nan", "inf") else f"dtype torch.{bad}"
    with pytest.raises(ConversionError, match=rf"`clip_decoder\.1\.norm\.weight` .*{expected}"):
        convert_state_dict(sd, num_attention_heads=HEADS)


# ----------------------------------------------------------------------------------------------------------------
# Reading files: the restricted unpickler
# ----------------------------------------------------------------------------------------------------------------
class MarkerOnLoad:
    """Unpickling this creates a file (its __reduce__ makes the loader call MarkerOnLoad(path, True))."""

    def __init__(self, path: str, create: bool = False):
        self.path = path
        if create:
            Path(path).touch()

    def __reduce__(self):
        return (MarkerOnLoad, (self.path, True))


def test_a_checkpoint_naming_another_class_is_refused_before_its_code_runs(tmp_path, capsys):
    marker = tmp_path / "marker"
    ckpt = save({"model": official_classifier_sd(), "args": MarkerOnLoad(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(ConversionError, match=r"refused to unpickle `.*MarkerOnLoad`") as err:
        to_hf(ckpt, tmp_path / "hf")
    assert "evil.pth" in str(err.value) and not marker.exists()
    assert cli_convert(ckpt, tmp_path / "hf") == 1 and "MarkerOnLoad" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "hf").exists() and leftovers(tmp_path) == []
    torch.load(ckpt, weights_only=False)  # the same file through an unrestricted unpickler runs the class's code
    assert marker.exists()


def test_numpy_values_and_namespaces_beside_the_weights_load(tmp_path):
    sd = official_classifier_sd()
    extras = {"args": argparse.Namespace(lr=1e-3, input_size=224), "best": np.float64(81.5), "ids": np.arange(3),
              "seen": {1, 2}, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999)}]}}
    out = to_hf(save({"model": sd, **extras}, tmp_path / "ft.pth"), tmp_path / "hf")
    weights = load_file(out / "model.safetensors")
    assert torch.equal(weights["classifier.weight"], sd["head.weight"])


# ----------------------------------------------------------------------------------------------------------------
# official -> ours -> official -> ours through files, with no flag the second time
# ----------------------------------------------------------------------------------------------------------------
def assert_same_directory(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert sorted(wa) == sorted(wb)
    for key in wa:
        assert wa[key].dtype == wb[key].dtype and torch.equal(wa[key], wb[key]), key
    ca, cb = (json.loads((d / "config.json").read_text()) for d in (a, b))
    assert ca == cb


@pytest.mark.parametrize("family", ["classifier", "stage1"])
def test_file_round_trip_is_exact_without_flags_the_second_time(tmp_path, family):
    names = tmp_path / "labels.txt"
    names.write_text("\n".join(f"class {i}" for i in range(LABELS)))
    if family == "classifier":  # 16 frames x 48 px: the official file stores pos_embed
        sd, flags = official_classifier_sd(pos_embed=pos_table(16, 48)), {"label_file": names}
    else:
        sd, flags = official_pretrain_sd(), {"num_frames": FRAMES, "image_size": IMAGE}
    first = to_hf(save({"model": sd}, tmp_path / "official.pth"), tmp_path / "first", **flags)
    assert main(["--reverse", "--checkpoint", str(first), "--output_dir", str(tmp_path / "back")]) == 0
    back = torch.load(tmp_path / "back" / "model.pth", weights_only=True)
    assert sorted(k for k in back if k != "umt_transformers_config") == sorted(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    second = tmp_path / "second"
    assert main(["--checkpoint", str(tmp_path / "back" / "model.pth"), "--output_dir", str(second)]) == 0
    assert_same_directory(first, second)
