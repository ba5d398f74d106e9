"""Official Stage-2 (multi-modality) checkpoints <-> UMTForVideoTextRetrieval (modeling_umt/conversion/).

Official-layout state dicts are produced from our model by `to_official_state_dict` (key names of
official_umt.md §7 c); numerical parity with the official code itself is tests/test_stage2_official_parity.py.
"""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch
from transformers import AutoModel

from _retrieval_tiny import tiny_config, tiny_inputs, tiny_text_config, tiny_vision_config
from modeling_umt import UMTForVideoTextRetrieval
from modeling_umt.conversion import ConversionError, convert_checkpoint, convert_state_dict, to_official_state_dict
from modeling_umt.conversion import safe_pickle
from modeling_umt.conversion.cli import main


def random_model(**overrides) -> UMTForVideoTextRetrieval:
    torch.manual_seed(0)
    model = UMTForVideoTextRetrieval(tiny_config(**overrides)).eval()
    with torch.no_grad():  # non-trivial norms, biases and temperature
        for name, p in model.named_parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def assert_same_outputs(a: UMTForVideoTextRetrieval, b: UMTForVideoTextRetrieval) -> None:
    pixel_values, ids, mask = tiny_inputs()
    with torch.no_grad():
        oa, ob = a(pixel_values, ids, mask), b(pixel_values, ids, mask)
        torch.testing.assert_close(oa.logits_per_video, ob.logits_per_video, atol=0, rtol=0)
        va, vb = a.get_video_features(pixel_values), b.get_video_features(pixel_values)
        ta = a.get_text_features(ids, mask)
        torch.testing.assert_close(
            a.get_itm_logits(va.last_hidden_state, ta.last_hidden_state, mask),
            b.get_itm_logits(vb.last_hidden_state, ta.last_hidden_state, mask), atol=0, rtol=0,
        )


def test_pretraining_layout_round_trip_drops_the_teacher():
    model = random_model()
    official = to_official_state_dict(model)
    assert "text_encoder.bert.encoder.layer.2.crossattention.self.key.weight" in official
    assert "vision_encoder.clip_decoder.1.norm.bias" in official and "vision_encoder.pool_norm.weight" in official
    assert official["vision_encoder.encoder.blocks.0.attn.qkv.weight"].shape == (96, 32)
    official["clip_teacher.conv1.weight"] = torch.zeros(8, 3, 1, 16, 16)
    official["text_encoder.bert.embeddings.position_ids"] = torch.arange(32)[None]
    logs = []
    config, ours = convert_state_dict(
        official, num_frames=2, image_size=32, num_attention_heads=4, text_num_attention_heads=4, log=logs.append
    )
    assert config.fusion_layer == 2 and config.embed_dim == 16 and config.use_mlm_head
    assert config.vision_config.num_uta_layers == 2 and config.vision_config.uta_output_dim == 16
    assert "1 clip_teacher" in logs[0]
    converted = UMTForVideoTextRetrieval(config).eval()
    result = converted.load_state_dict(ours, strict=False)
    assert [k for k in result.missing_keys if "decoder" not in k] == [] and result.unexpected_keys == []
    for name, value in model.state_dict().items():
        torch.testing.assert_close(converted.state_dict()[name], value, atol=0, rtol=0, msg=name)
    assert_same_outputs(model, converted)


def test_finetuned_layout_without_bert_prefix_mlm_head_or_clip_decoder():
    model = random_model(use_mlm_head=False, vision_config=tiny_vision_config(uta_num_layers=0))
    official = to_official_state_dict(model)
    assert "text_encoder.encoder.layer.0.attention.self.query.weight" in official
    assert not any(k.startswith(("text_encoder.bert.", "text_encoder.cls.", "vision_encoder.clip_decoder")) for k in official)
    config, ours = convert_state_dict(official, num_frames=2, image_size=32, num_attention_heads=4,
                                             text_num_attention_heads=4)
    assert not config.use_mlm_head and config.vision_config.num_uta_layers == 0
    converted = UMTForVideoTextRetrieval(config).eval()
    converted.load_state_dict(ours, strict=True)
    assert_same_outputs(model, converted)


def test_unknown_and_qa_keys_are_refused():
    official = to_official_state_dict(random_model())
    with pytest.raises(ConversionError, match="vision_encoder.extra"):
        convert_state_dict({**official, "vision_encoder.extra": torch.zeros(1)}, num_attention_heads=4)
    with pytest.raises(ConversionError, match="QA checkpoint"):
        convert_state_dict({**official, "text_decoder.bert.embeddings.word_embeddings.weight": torch.zeros(1)})


def test_command_line_converts_and_reverses(tmp_path):
    torch.manual_seed(0)  # widths 64 with one head: no released size, so the head counts are flags
    config = tiny_config(
        vision_config=tiny_vision_config(hidden_size=64, num_attention_heads=1),
        text_config=tiny_text_config(hidden_size=64, num_attention_heads=1),
    )
    model = UMTForVideoTextRetrieval(config).eval()
    torch.save({"model": to_official_state_dict(model), "epoch": 3}, tmp_path / "b16_25m.pth")
    out = tmp_path / "hf"
    assert main(["--checkpoint", str(tmp_path / "b16_25m.pth"), "--output_dir", str(out), "--num_frames", "2",
                 "--image_size", "32", "--num_attention_heads", "1", "--text_num_attention_heads", "1"]) == 0
    loaded = AutoModel.from_pretrained(out)
    assert type(loaded) is UMTForVideoTextRetrieval
    assert_same_outputs(model, loaded.eval())
    assert main(["--reverse", "--checkpoint", str(out), "--output_dir", str(tmp_path / "back")]) == 0
    back = torch.load(tmp_path / "back" / "model.pth", weights_only=True)
    for key, value in to_official_state_dict(model).items():
        torch.testing.assert_close(back[key], value, atol=0, rtol=0, msg=key)


def fake_official_easydict(monkeypatch):
    """A class named `utils.easydict.EasyDict`, as the official Stage-2 code pickles its config: a dict whose
    attributes mirror its items (nested dicts become EasyDicts too). Registered only while the checkpoint is saved."""

    class EasyDict(dict):
        def __init__(self, items=None):
            super().__init__()
            for key, value in (items or {}).items():
                setattr(self, key, value)

        def __setattr__(self, key, value):
            value = EasyDict(value) if isinstance(value, dict) and not isinstance(value, EasyDict) else value
            super().__setattr__(key, value)
            super().__setitem__(key, value)

    EasyDict.__module__, EasyDict.__qualname__ = "utils.easydict", "EasyDict"
    utils, easydict = types.ModuleType("utils"), types.ModuleType("utils.easydict")
    utils.easydict, easydict.EasyDict = easydict, EasyDict
    monkeypatch.setitem(sys.modules, "utils", utils)
    monkeypatch.setitem(sys.modules, "utils.easydict", easydict)
    return EasyDict


def test_official_training_checkpoint_with_an_easydict_config_converts(tmp_path, monkeypatch):
    model = random_model()
    with monkeypatch.context() as patch:
        EasyDict = fake_official_easydict(patch)
        config = EasyDict({"num_frames": 2, "inputs": {"image_res": 32}, "model": {"embed_dim": 16}})
        assert isinstance(config.inputs, EasyDict) and config.inputs.image_res == 32
        checkpoint = {"model": to_official_state_dict(model), "config": config, "epoch": 3, "global_step": 10,
                      "scaler": {"scale": 65536.0}, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}}
        torch.save(checkpoint, tmp_path / "ckpt_best.pth")
    assert "utils.easydict" not in sys.modules  # loading must not need (or import) the official class
    raw = torch.load(tmp_path / "ckpt_best.pth", weights_only=False, pickle_module=safe_pickle)
    plain = safe_pickle.plain_containers(raw)["config"]
    assert type(plain) is dict and type(plain["inputs"]) is dict and plain["inputs"]["image_res"] == 32
    out = tmp_path / "hf"
    assert main(["--checkpoint", str(tmp_path / "ckpt_best.pth"), "--output_dir", str(out), "--num_frames", "2",
                 "--image_size", "32", "--num_attention_heads", "4", "--text_num_attention_heads", "4"]) == 0
    assert_same_outputs(model, AutoModel.from_pretrained(out).eval())


@pytest.mark.parametrize("layout", ["pretraining", "retrieval"])
def test_file_round_trip_keeps_pooling_and_heads_without_flags(tmp_path, layout):
    """official -> ours -> official -> ours: the second conversion, flag-free, rebuilds the same model (the config
    `--reverse` stored supplies text_pooling, frames and the head counts)."""
    if layout == "pretraining":
        model = random_model(text_pooling="mean")
    else:
        model = random_model(use_mlm_head=False, text_pooling="mean")
    torch.save(to_official_state_dict(model), tmp_path / "official.pth")
    first, second = tmp_path / "first", tmp_path / "second"
    logs: list[str] = []
    convert_checkpoint(tmp_path / "official.pth", first, num_frames=2, image_size=32, num_attention_heads=4,
                       text_num_attention_heads=4, text_pooling="mean", log=logs.append)
    assert f"family: stage2-{layout}" in logs[0] and "  text_pooling = 'mean' (flag)" in logs
    assert main(["--reverse", "--checkpoint", str(first), "--output_dir", str(tmp_path / "back")]) == 0
    logs.clear()
    convert_checkpoint(tmp_path / "back" / "model.pth", second, log=logs.append)
    assert "  text_pooling = 'mean' (from the config stored by --reverse)" in logs
    assert "  text_num_attention_heads = 4 (from the config stored by --reverse)" in logs
    assert json.loads((first / "config.json").read_text()) == json.loads((second / "config.json").read_text())
    a, b = AutoModel.from_pretrained(first).eval(), AutoModel.from_pretrained(second).eval()
    for key, value in a.state_dict().items():
        assert value.dtype == b.state_dict()[key].dtype and torch.equal(value, b.state_dict()[key]), key
    assert_same_outputs(model, b)


def test_stage2_settings_are_printed_and_checked():
    official = to_official_state_dict(random_model(use_mlm_head=False))
    logs: list[str] = []
    config, _ = convert_state_dict(official, num_attention_heads=4, text_num_attention_heads=4, log=logs.append)
    assert (config.vision_config.num_frames, config.text_pooling) == (12, "cls")  # official retrieval fine-tuning
    for line in ("  num_frames = 12 (default: official retrieval fine-tuning", "  image_size = 224 (default",
                 "  fusion_layer = 2 (from the weights)", "  text_pooling = 'cls' (default: the official [CLS] token"):
        assert any(entry.startswith(line) for entry in logs), logs
    with pytest.raises(ConversionError, match="--fusion_layer 1` contradicts the checkpoint's weights, which give 2"):
        convert_state_dict(official, num_attention_heads=4, text_num_attention_heads=4, fusion_layer=1)
    with pytest.raises(ConversionError, match="text_num_attention_heads.*width 24 x 4 layers is no released size"):
        convert_state_dict(official, num_attention_heads=4)
    untied = to_official_state_dict(random_model())
    untied["text_encoder.cls.predictions.decoder.bias"] = untied["text_encoder.cls.predictions.decoder.bias"] + 1
    with pytest.raises(ConversionError, match="decoder.bias` differs from `text_encoder.cls.predictions.bias"):
        convert_state_dict(untied, num_attention_heads=4, text_num_attention_heads=4)
