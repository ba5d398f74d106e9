"""UMTConfig: defaults match the released UMT-B/16, presets, serialization round trips, derived geometry and
validation messages that name the offending field."""

import json

import pytest
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig

from modeling_umt import UMT_PRESETS, UMTConfig

# Validation runs in `@strict`'s class validator, which wraps our ValueError in a StrictDataclassError whose message
# carries the original text.
ConfigError = (ValueError, StrictDataclassError)

TINY = dict(
    image_size=16,
    patch_size=8,
    num_frames=4,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    uta_output_dim=16,
)


def test_defaults_are_the_released_umt_b16():
    # official_umt.md §1.1/§1.3/§1.5: tubelet 1, patch 16, 8 frames at 224, eps 1e-6, q/v bias, head init x 0.001
    c = UMTConfig()
    assert c.model_type == "umt"
    assert (c.image_size, c.patch_size, c.num_frames, c.tubelet_size, c.num_channels) == (224, 16, 8, 1, 3)
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (768, 12, 12, 3072)
    assert c.layer_norm_eps == 1e-6 and c.qkv_bias and c.hidden_act == "gelu"
    assert c.head_init_scale == 0.001 and c.pooling == "mean" and not c.use_final_norm
    assert c.grid_size == (8, 14, 14) and c.num_patches == 1568
    assert c.reference_grid == 14 and c.pos_embed_reference_frames == 8
    assert c.uta_layer_indices == [6, 7, 8, 9, 10, 11]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("umt-b16", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                         drop_path_rate=0.1, uta_output_dim=512, uta_layer_indices=[6, 7, 8, 9, 10, 11])),
        ("umt-l16", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                         drop_path_rate=0.2, uta_output_dim=768, uta_layer_indices=[18, 19, 20, 21, 22, 23])),
    ],
)  # fmt: skip
def test_presets(name, expected):
    c = UMTConfig.from_preset(name)
    for key, value in expected.items():
        assert getattr(c, key) == value, key
    assert c.patch_size == 16 and c.tubelet_size == 1 and c.num_frames == 8
    assert set(UMT_PRESETS[name]) <= set(c.to_dict())


def test_preset_overrides_and_unknown_name():
    c = UMTConfig.from_preset("umt-l16", num_labels=400, num_frames=16, drop_path_rate=0.0)
    assert (c.num_labels, c.num_frames, c.drop_path_rate, c.hidden_size) == (400, 16, 0.0, 1024)
    assert len(c.id2label) == 400
    with pytest.raises(ValueError, match=r"`name` must be one of \['umt-b16', 'umt-l16'\], got 'umt-h14'"):
        UMTConfig.from_preset("umt-h14")


def test_to_dict_json_round_trip():
    c = UMTConfig(**TINY, num_labels=3, problem_type="multi_label_classification", pooling="temporal_mean")
    d = c.to_dict()
    assert d["model_type"] == "umt" and d["pooling"] == "temporal_mean" and len(d["id2label"]) == 3
    again = UMTConfig.from_dict(d)
    assert again.to_dict() == d
    from_json = UMTConfig.from_dict(json.loads(c.to_json_string()))
    assert from_json.to_dict() == d
    assert from_json.problem_type == "multi_label_classification" and from_json.num_labels == 3


def test_save_load_pretrained_and_auto_config(tmp_path):
    c = UMTConfig(**{**TINY, "image_size": [16, 24]}, position_embedding_type="direct", num_labels=2)
    c.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "umt" and saved["image_size"] == [16, 24]
    assert saved["auto_map"]["AutoConfig"] == "configuration_umt.UMTConfig"  # remote-code style loading on the Hub
    loaded = UMTConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == c.to_dict()
    assert loaded.image_hw == (16, 24) and loaded.grid_size == (4, 2, 3)
    auto = AutoConfig.from_pretrained(tmp_path)
    assert type(auto) is UMTConfig
    assert {**auto.to_dict(), "_name_or_path": ""} == {**c.to_dict(), "_name_or_path": ""}
    assert type(AutoConfig.for_model("umt", **TINY)) is UMTConfig


def test_from_pretrained_kwargs_override(tmp_path):
    UMTConfig(**TINY).save_pretrained(tmp_path)
    c = UMTConfig.from_pretrained(tmp_path, num_frames=8, drop_path_rate=0.1)
    assert c.num_frames == 8 and c.drop_path_rate == 0.1 and c.grid_size == (8, 2, 2)


def test_derived_geometry():
    c = UMTConfig(image_size=(32, 48), patch_size=(8, 16), num_frames=6, tubelet_size=2)
    assert c.image_hw == (32, 48) and c.patch_hw == (8, 16)
    assert c.grid_size == (3, 4, 3) and c.num_patches == 36
    assert UMTConfig(patch_size=14, image_size=224).reference_grid == 16  # official pre_n_position 2048 for /14
    assert UMTConfig(pos_embed_reference_grid=7).reference_grid == 7


def test_uta_layer_selection():
    assert UMTConfig(**TINY).num_uta_layers == 2  # min(6, depth) when unset
    assert UMTConfig(**TINY).uta_layer_indices == [0, 1]
    c = UMTConfig(**{**TINY, "num_hidden_layers": 8}, uta_num_layers=3, uta_layer_interval=2)
    assert c.uta_layer_indices == [3, 5, 7]  # official return_index [7, 5, 3], ascending
    assert UMTConfig(**TINY, uta_num_layers=0).uta_layer_indices == []


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(hidden_size=30, num_attention_heads=4), r"`hidden_size` \(30\) must be divisible by `num_attention_heads` \(4\)"),
        (dict(image_size=30, patch_size=8), r"`image_size` \(30, 30\) must be divisible by `patch_size` \(8, 8\)"),
        (dict(image_size=(32, 30), patch_size=8), r"`image_size` \(32, 30\) must be divisible"),
        (dict(num_frames=3, tubelet_size=2), r"`num_frames` \(3\) must be a positive multiple of `tubelet_size` \(2\)"),
        (dict(tubelet_size=0), r"`num_frames` \(8\) must be a positive multiple of `tubelet_size` \(0\)"),
        (dict(hidden_dropout_prob=1.0), r"`hidden_dropout_prob` must be in \[0, 1\), got 1.0"),
        (dict(attention_probs_dropout_prob=-0.1), r"`attention_probs_dropout_prob` must be in \[0, 1\), got -0.1"),
        (dict(drop_path_rate=1.5), r"`drop_path_rate` must be in \[0, 1\), got 1.5"),
        (dict(classifier_dropout=1), r"`classifier_dropout` must be in \[0, 1\), got 1"),
        (dict(pooling="max"), r"`pooling` must be one of \('mean', 'temporal_mean'\), got 'max'"),
        (dict(position_embedding_type="learned"), r"`position_embedding_type` must be one of \('interpolated', 'direct'\), got 'learned'"),
        (dict(initializer_type="kaiming"), r"`initializer_type` must be one of .*got 'kaiming'"),
        (dict(head_init_scale=-1.0), r"`head_init_scale` must be >= 0, got -1.0"),
        (dict(uta_num_layers=13), r"`uta_num_layers` \(13\) must be between 0 and `num_hidden_layers` \(12\)"),
        (dict(uta_layer_interval=3), r"`uta_layer_interval` \(3\) x `uta_num_layers` \(None\) reaches below layer 0"),
        (dict(image_size=(224,)), r"`image_size` must be an int or a pair of ints, got \(224,\)"),
        (dict(patch_size=[16, 16, 16]), r"`patch_size` must be an int or a pair of ints"),
    ],
)  # fmt: skip
def test_validation_errors_name_the_field(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        UMTConfig(**kwargs)


def test_validation_also_runs_on_from_dict_and_from_pretrained(tmp_path):
    bad = UMTConfig(**TINY).to_dict()
    bad["num_attention_heads"] = 5
    with pytest.raises(ConfigError, match="`hidden_size` \\(32\\) must be divisible by `num_attention_heads` \\(5\\)"):
        UMTConfig.from_dict(bad)
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="num_attention_heads"):
        UMTConfig.from_pretrained(tmp_path)


def test_common_pretrained_config_fields_pass_through():
    c = UMTConfig(**TINY, num_labels=5, problem_type="regression", output_hidden_states=True)
    assert c.num_labels == 5 and len(c.label2id) == 5
    assert c.problem_type == "regression" and c.output_hidden_states
