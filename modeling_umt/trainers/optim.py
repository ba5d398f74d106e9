"""Optimizer pieces of the official recipes: weight-decay rules, layer-wise lr decay groups, lr scaling.

`layer_decay_parameter_groups` stays hand-written rather than timm's `param_groups_layer_decay`: timm's groups carry
only `lr_scale` for timm's own schedulers (the transformers / DeepSpeed schedules need each group's `lr`), and timm
finds layers through `group_matcher`, which peft-prefixed names (`base_model.model.umt...`) defeat.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn


def decay_parameter_names(model: nn.Module, extra_no_decay: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Names of the parameters that get weight decay, by the official rule (optim_factory.get_parameter_groups):
    every parameter with 2 or more dimensions except those named in `extra_no_decay` / `model.no_weight_decay()`.
    Biases, LayerNorm weights and other 1-D parameters (and 0-D ones) get none."""
    skip = set(extra_no_decay)
    if hasattr(model, "no_weight_decay"):
        skip |= set(model.no_weight_decay())
    return [
        name
        for name, p in model.named_parameters()
        if p.ndim >= 2 and not any(name == s or name.endswith("." + s) for s in skip)
    ]


def scale_learning_rate(base_lr: float, global_batch_size: int, reference: int = 256) -> float:
    """The official linear lr scaling: base_lr x global batch / 256 (e.g. 1.5e-4 x 2048 / 256 = 1.2e-3)."""
    if global_batch_size <= 0:
        raise ValueError(f"`global_batch_size` must be positive, got {global_batch_size}.")
    return base_lr * global_batch_size / reference


def stage2_decay_parameter_names(model: nn.Module) -> list[str]:
    """Official Stage-2 rule (`utils/optimizer.py`): no weight decay for 1-D parameters and biases; everything else,
    including the 0-dim temperature, gets it."""
    return [name for name, p in model.named_parameters() if not (p.ndim == 1 or name.endswith(".bias"))]


_BLOCK_ID = re.compile(r"(?:^|\.)(?:encoder\.layers?|blocks)\.(\d+)\.")
_EMBEDDING_NAMES = re.compile(
    r"(?:^|\.)(?:embeddings|patch_embed|pos_embed|cls_token|mask_token|pre_layrnorm)(?:\.|$)"
)


def umt_layer_id(name: str, num_layers: int) -> int:
    """Layer id of a parameter for layer-wise lr decay (official `get_num_layer_for_vit`).

    Patch / position embeddings (and `cls_token`, `mask_token`; a CLIP tower's `embeddings` and `pre_layrnorm`) -> 0;
    block i (`encoder.layer.i.`, the official `blocks.i.`, a CLIP tower's `encoder.layers.i.`) -> i + 1; everything
    else (`pooler.norm` = fc_norm, `classifier` = head, a final norm, CLIP's `post_layernorm` and
    `visual_projection`) -> L + 1. Prefixes such as `umt.` or peft's `base_model.model.` do not matter.
    """
    block = _BLOCK_ID.search(name)
    if block is not None:
        return int(block.group(1)) + 1
    if _EMBEDDING_NAMES.search(name):
        return 0
    return num_layers + 1


def layer_decay_parameter_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float = 0.05,
    layer_decay: float | None = 0.75,
    num_layers: int | None = None,
    decay_names: Sequence[str] | None = None,
) -> list[dict]:
    """Optimizer parameter groups with layer-wise lr decay and the official weight-decay rule.

    Layer id i (`umt_layer_id`) gets lr = learning_rate * layer_decay ** (L + 1 - i): the head and fc_norm train at
    `learning_rate`, block L - 1 at x layer_decay, ..., the patch embedding at x layer_decay ** (L + 1). Within each
    layer, biases, norms and other 1-D parameters get no weight decay (`decay_parameter_names`). Frozen parameters
    are left out. `layer_decay` None or 1 gives every group the same lr.

    Returns:
        list of dicts {"params", "lr", "weight_decay", "lr_scale", "layer_id"}, the head's layer first (so the
        Trainer's logged `learning_rate`, taken from group 0, is the base rate), then descending layer ids.
    """
    if layer_decay is not None and not 0 < layer_decay <= 1:
        raise ValueError(f"`layer_decay` must be in (0, 1] or None, got {layer_decay}.")
    if num_layers is None:
        config = getattr(model, "config", None)
        num_layers = getattr(config, "num_hidden_layers", None)
        if num_layers is None:
            raise ValueError("`num_layers` must be given for a model without `config.num_hidden_layers`.")
    decay = set(decay_parameter_names(model) if decay_names is None else decay_names)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = umt_layer_id(name, num_layers)
        scale = 1.0 if layer_decay is None else layer_decay ** (num_layers + 1 - layer)
        key = (layer, name in decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "lr": learning_rate * scale,
                "weight_decay": weight_decay if key[1] else 0.0,
                "lr_scale": scale,
                "layer_id": layer,
            }
        groups[key]["params"].append(param)
    return [groups[key] for key in sorted(groups, key=lambda k: (-k[0], not k[1]))]


__all__ = [
    "decay_parameter_names",
    "layer_decay_parameter_groups",
    "scale_learning_rate",
    "stage2_decay_parameter_names",
    "umt_layer_id",
]
