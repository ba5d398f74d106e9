"""Loading a video classifier to fine-tune: from a classifier, a Stage-1 student or a bare encoder checkpoint
(`load_video_classifier`), and head transfer to a subset of its classes (`select_label_subset`); loading an action
detector to fine-tune from any of these or from a detector (`load_action_detector`)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import torch
from torch import nn
from transformers.utils import logging as hf_logging

from .configuration_umt import UMTConfig, UMTDetectionConfig
from .modeling_umt import UMTForVideoClassification
from .modeling_umt_detection import UMTForVideoActionDetection

logger = hf_logging.get_logger(__name__)


def select_label_subset(model: nn.Module, keep: Sequence[int | str]) -> nn.Module:
    """Keep some rows of a classifier's head, in the given order (official K710 -> K400 head transfer: the first 400
    rows; K600 / K700 through a label list).

    Args:
        model: a `UMTForVideoClassification` whose head has K rows.
        keep: class ids (int, or digit strings) or class names of `model.config.label2id`; row j of the new head is
            old row keep[j].
    Returns:
        the same model, its `classifier` now (len(keep),) outputs and `config.num_labels` / `id2label` / `label2id`
        matching.
    """
    old = model.classifier
    if not isinstance(old, nn.Linear):
        raise ValueError(f"`model` must have a Linear `classifier`, got {type(old).__name__}.")
    label2id = {str(name): int(i) for name, i in (model.config.label2id or {}).items()}
    rows = []
    for item in keep:
        if isinstance(item, str) and item in label2id:
            rows.append(label2id[item])
        elif isinstance(item, int) or (isinstance(item, str) and item.strip().isdigit()):
            rows.append(int(item))
        else:
            raise ValueError(f"`keep` holds {item!r}, which is neither a class id nor a label name of the model.")
    if not rows or min(rows) < 0 or max(rows) >= old.out_features:
        raise ValueError(f"`keep` must name rows in [0, {old.out_features}), got {rows[:10]}...")
    new = type(old)(old.in_features, len(rows), bias=old.bias is not None, device=old.weight.device,
                    dtype=old.weight.dtype)  # fmt: skip
    with torch.no_grad():
        new.weight.copy_(old.weight[rows])
        if old.bias is not None:
            new.bias.copy_(old.bias[rows])
    model.classifier = new
    old_names = model.config.id2label or {}
    names = [old_names.get(r, old_names.get(str(r), f"LABEL_{r}")) for r in rows]
    model.config.num_labels = len(rows)
    model.num_labels = len(rows)
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {name: i for i, name in enumerate(names)}
    return model


def load_video_classifier(
    name_or_path: str | os.PathLike,
    id2label: dict[int, str] | None = None,
    label_subset: Sequence[int | str] | None = None,
    **config_overrides,
):
    """A `UMTForVideoClassification` to fine-tune from a saved directory.

    - A classifier checkpoint (`UMTForVideoClassification`, e.g. a converted official fine-tuned model) loads whole;
      with `label_subset` its head keeps those rows (`select_label_subset`); otherwise, if `id2label` has another
      number of classes, a new head is made (the old one is dropped, as the official `--delete_head`).
    - Any other UMT checkpoint (a `run_stage1.py` `UMTForPreTraining`, a `UMTVideoModel`) gives the backbone; the
      final LayerNorm is dropped (`use_final_norm=False`: the official fine-tuning model normalises the pooled vector
      with a new fc_norm instead) and the head is new (truncated normal x `head_init_scale`).

    Args:
        id2label: the classes to fine-tune on; sets `num_labels`.
        config_overrides: config fields to change, e.g. drop_path_rate=0.1, attn_implementation is not one of them.
    """
    config = UMTConfig.from_pretrained(name_or_path)
    is_classifier = "UMTForVideoClassification" in (config.architectures or [])
    for key, value in config_overrides.items():
        if not hasattr(config, key):
            raise ValueError(f"`{key}` is not a UMTConfig field.")
        setattr(config, key, value)
    if is_classifier:
        model = UMTForVideoClassification.from_pretrained(name_or_path, config=config)
        if label_subset is not None:
            select_label_subset(model, label_subset)
        elif id2label is not None and len(id2label) != config.num_labels:
            logger.warning(
                "The checkpoint's head has %d classes but %d are asked for: starting a new head.",
                config.num_labels, len(id2label),
            )  # fmt: skip
            config.num_labels = len(id2label)
            config.id2label, config.label2id = dict(id2label), {v: k for k, v in id2label.items()}
            model = UMTForVideoClassification.from_pretrained(name_or_path, config=config, ignore_mismatched_sizes=True)
        if id2label is not None:
            if len(id2label) != model.config.num_labels:
                raise ValueError(
                    f"`label_subset` keeps {model.config.num_labels} classes but `id2label` has {len(id2label)}."
                )
            model.config.id2label = dict(id2label)
            model.config.label2id = {v: k for k, v in id2label.items()}
        return model
    if label_subset is not None:
        raise ValueError("`label_subset` needs a classifier checkpoint; this one has no classification head.")
    config.use_final_norm = False
    if id2label is not None:
        config.num_labels = len(id2label)
        config.id2label, config.label2id = dict(id2label), {v: k for k, v in id2label.items()}
    config.architectures = ["UMTForVideoClassification"]
    # The load report would list the expected differences (new head and fc_norm, dropped final norm and Stage-1
    # heads) as problems; check them here instead and report only the unexpected ones.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = UMTForVideoClassification.from_pretrained(name_or_path, config=config, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    expected_missing = re.compile(r"^(classifier|umt\.pooler)\.")
    expected_unexpected = re.compile(r"^(umt\.layernorm|uta_heads|umt\.uta_heads)\.")
    odd = sorted(k for k in info["missing_keys"] if not expected_missing.match(k))
    odd += sorted(k for k in info["unexpected_keys"] if not expected_unexpected.match(k))
    odd += sorted(str(k) for k in info["mismatched_keys"])
    if odd:
        logger.warning("Loading %s as a backbone: unexpected differences %s", name_or_path, odd)
    logger.info(
        "Backbone from %s; new head (%d classes) and fc_norm, final norm dropped.", name_or_path, config.num_labels
    )
    return model


def load_action_detector(name_or_path: str | os.PathLike, id2label: dict[int, str], **config_overrides):
    """A `UMTForVideoActionDetection` to fine-tune from a saved UMT directory (detector, classifier, Stage-1 student
    or bare encoder), as the official AVA fine-tuning loads a K710 classifier:

    - the encoder's weights load; its final LayerNorm too when the checkpoint has one (Stage 1, a detector), else it
      starts fresh (a classifier normalises its pooled vector instead: its fc_norm is dropped, as official);
    - the action head is new unless the checkpoint is a detector with the same number of actions;
    - position table: a checkpoint trained with the `"direct"` rule (Stage 1) gets the `"interpolated"` rule with its
      own layout as the reference (the same table there; resized per input frame elsewhere, as official); a
      checkpoint already on the interpolated rule keeps its reference.

    Args:
        id2label: the actions, one per logit column. config_overrides: UMTConfig fields (e.g. drop_path_rate=0.2).
    """
    source = UMTConfig.from_pretrained(name_or_path) if not _is_detector(name_or_path) else (
        UMTDetectionConfig.from_pretrained(name_or_path))
    fields = {k: v for k, v in source.to_dict().items()
              if k in UMTDetectionConfig.__dataclass_fields__ and k not in ("model_type", "transformers_version")}
    if source.position_embedding_type == "direct":
        t, gh, gw = source.grid_size
        if gh != gw:
            raise ValueError(f"`{name_or_path}` has a non-square token grid {gh}x{gw}: no square reference layout.")
        fields.update(position_embedding_type="interpolated", pos_embed_reference_frames=source.num_frames,
                      pos_embed_reference_grid=gh)
    for key in config_overrides:
        if key not in UMTDetectionConfig.__dataclass_fields__:
            raise ValueError(f"`{key}` is not a UMTConfig field.")
    fields.update(config_overrides, use_final_norm=True, num_labels=len(id2label), id2label=dict(id2label),
                  label2id={v: k for k, v in id2label.items()}, architectures=["UMTForVideoActionDetection"])
    fields.pop("auto_map", None)
    config = UMTDetectionConfig(**fields)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the expected differences are checked below instead of printed as problems
    try:
        model, info = UMTForVideoActionDetection.from_pretrained(
            name_or_path, config=config, ignore_mismatched_sizes=True, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    expected = re.compile(r"^(classifier\.|umt\.layernorm\.)")
    odd = sorted(k for k in info["missing_keys"] if not expected.match(k))
    odd += sorted(str(k) for k in info["mismatched_keys"] if not str(k).startswith("classifier."))
    if odd:
        logger.warning("Loading %s as a detector backbone: unexpected differences %s", name_or_path, odd)
    logger.info("Detector from %s: new %s", name_or_path,
                ", ".join(sorted({k.split(".")[0] if k.startswith("classifier") else "final norm"
                                  for k in info["missing_keys"]})) or "nothing")
    return model


def _is_detector(name_or_path) -> bool:
    return UMTConfig.get_config_dict(name_or_path)[0].get("model_type") == UMTDetectionConfig.model_type


__all__ = ["load_action_detector", "load_video_classifier", "select_label_subset"]
