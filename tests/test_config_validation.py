"""modeling_umt.config_validation: the one field validator every config uses (types, finiteness, ranges), the warning
for unknown saved keys and the refusal of another model's model_type. The per-field bad values of UMTConfig,
UMTRetrievalConfig, UMTDetectionConfig and UMTQAConfig are cases of the fuzz suite (tests/test_fuzz.py)."""

from __future__ import annotations

import json
import logging
import math

import pytest
from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, PreTrainedConfig, VideoMAEConfig

from modeling_umt import UMTConfig, UMTRetrievalConfig, UMTVideoModel
from modeling_umt.config_validation import (
    NON_NEGATIVE, POSITIVE, PROBABILITY, Range, ValidatedConfigMixin, check_config_fields, check_labels,
    warn_unknown_keys,
)

TINY = dict(image_size=16, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, uta_output_dim=16)  # fmt: skip


@strict
class _HeadConfig(ValidatedConfigMixin, PreTrainedConfig):
    model_type = "umt_test_head"
    num_answers: int = 10
    answer_dropout: float | int = 0.1
    scale: float | None = None
    use_bias: bool = True

    def validate_architecture(self):
        check_config_fields(self, {"num_answers": POSITIVE, "answer_dropout": PROBABILITY, "scale": NON_NEGATIVE})


def test_range_descriptions_and_bounds():
    assert POSITIVE.describe() == ">= 1" and PROBABILITY.describe() == "in [0, 1)"
    assert Range(low=0, low_open=True).describe() == "> 0" and Range(high=2).describe() == "<= 2"
    assert PROBABILITY.contains(0) and not PROBABILITY.contains(1) and not Range(low=0, low_open=True).contains(0)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(num_answers=0), r"_HeadConfig: `num_answers` must be >= 1, got 0\."),
        (dict(answer_dropout=1.0), r"`answer_dropout` must be in \[0, 1\), got 1.0"),
        (dict(answer_dropout=math.nan), r"`answer_dropout` must be a finite number, got nan"),
        (dict(scale=-math.inf), r"`scale` must be a finite number, got -inf"),
        (dict(scale=-2.0), r"`scale` must be >= 0, got -2.0"),
    ],
)
def test_a_new_config_adopts_the_checks_in_one_line(kwargs, pattern):
    with pytest.raises(StrictDataclassError, match=pattern):
        _HeadConfig(**kwargs)
    assert _HeadConfig(scale=None, answer_dropout=0).num_answers == 10  # None where allowed, int for a float field


def test_wrong_types_are_named_even_where_annotations_are_strings():
    # configuration_umt.py uses `from __future__ import annotations`, which `@strict` alone cannot check
    for field, value, expected in (("qkv_bias", "yes", "bool"), ("hidden_size", "32", "int"),
                                   ("hidden_size", True, "int"), ("layer_norm_eps", "x", "float")):
        with pytest.raises(StrictDataclassError, match=rf"`{field}` must be {expected}, got {value!r}"):
            UMTConfig(**{**TINY, field: value})


def test_a_range_for_an_unknown_field_is_a_programming_error():
    with pytest.raises(KeyError, match="hiden_size"):
        check_config_fields(UMTConfig(**TINY), {"hiden_size": POSITIVE})


def test_unknown_saved_keys_warn_and_the_config_loads(tmp_path, caplog):
    saved = UMTConfig(**TINY).to_dict()
    saved["hiden_size"] = 64
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with caplog.at_level(logging.WARNING, logger="modeling_umt.config_validation"):
        config = UMTConfig.from_pretrained(tmp_path)
    assert config.hidden_size == 32
    assert "unknown keys" in caplog.text and "'hiden_size'" in caplog.text
    assert warn_unknown_keys(UMTConfig, UMTConfig(**TINY).to_dict(), "x") == []  # what we save is all known


def test_another_models_config_fails_with_our_classes_and_loads_with_auto(tmp_path):
    VideoMAEConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(tmp_path)
    for load in (UMTConfig.from_pretrained, UMTVideoModel.from_pretrained, UMTRetrievalConfig.from_pretrained):
        with pytest.raises(ValueError, match=r"model_type 'videomae'"):
            load(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), VideoMAEConfig)


def test_the_vision_config_still_loads_from_a_retrieval_folder(tmp_path):
    from _retrieval_tiny import tiny_config

    tiny_config().save_pretrained(tmp_path)
    assert UMTConfig.from_pretrained(tmp_path).hidden_size == 32
    assert UMTRetrievalConfig.from_pretrained(tmp_path).embed_dim == 16


def test_configs_of_one_family_read_each_others_folders(tmp_path):
    @strict
    class _DetectionConfig(UMTConfig):  # as a task config built on UMTConfig declares itself
        model_type = "umt_test_detection"

    UMTConfig(**TINY).save_pretrained(tmp_path / "stage1")
    assert _DetectionConfig.from_pretrained(tmp_path / "stage1").hidden_size == 32  # a detector from a Stage-1 folder
    _DetectionConfig(**TINY).save_pretrained(tmp_path / "detector")
    assert UMTConfig.from_pretrained(tmp_path / "detector").hidden_size == 32  # its backbone config
    with pytest.raises(ValueError, match=r"model_type 'umt_test_detection'"):
        UMTRetrievalConfig.from_pretrained(tmp_path / "detector")


@pytest.mark.parametrize(
    "id2label, num_labels, pattern",
    [
        ({0: "a", 1: "b"}, 3, r"`num_labels` \(3\) does not match `id2label`, which names 2 classes"),
        ({"0": "a", "2": "b"}, None, r"`id2label` keys must be the class ids 0..1 without gaps or repeats, got \[0, 2\]"),
        ({"x": "a"}, None, r"`id2label` keys must be class ids .*got the key 'x'"),
        (None, -2, r"`num_labels` must be >= 0, got -2"),
        (None, 2.0, r"`num_labels` must be int, got 2.0"),
    ],
)
def test_check_labels_names_the_contradiction(id2label, num_labels, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        check_labels("X", id2label, num_labels)
    with pytest.raises((ValueError, TypeError, StrictDataclassError), match=pattern):  # the mixin runs it at construction
        _HeadConfig(id2label=id2label, **({} if num_labels is None else {"num_labels": num_labels}))


def test_labels_given_alike_keep_their_names_and_from_pretrained_can_still_re_head(tmp_path, caplog):
    config = _HeadConfig(num_labels=2, id2label={"0": "cat", "1": "dog"})
    assert config.id2label == {0: "cat", 1: "dog"} and config.num_labels == 2
    check_labels("X", None, None)
    UMTConfig(**TINY, id2label={0: "a", 1: "b", 2: "c"}).save_pretrained(tmp_path)
    assert UMTConfig.from_pretrained(tmp_path).id2label == {0: "a", 1: "b", 2: "c"}
    assert UMTConfig.from_pretrained(tmp_path, num_labels=3).id2label == {0: "a", 1: "b", 2: "c"}
    with caplog.at_level(logging.WARNING, logger="modeling_umt.config_validation"):
        again = AutoConfig.from_pretrained(tmp_path, num_labels=4)  # transformers' way to give a new head
    assert again.id2label == {i: f"LABEL_{i}" for i in range(4)} and "replaces the 3 saved classes" in caplog.text
