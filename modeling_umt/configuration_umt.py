# Copyright 2026 The UMT-for-Transformers authors. Licensed under the Apache License, Version 2.0.
"""UMT configuration.

One config describes the UMT video ViT (Li et al., "Unmasked Teacher", ICCV 2023) and the heads built on it:
the Stage-1 alignment heads (`UMTForPreTraining`) and the classification head (`UMTForVideoClassification`).
Field names follow transformers' VideoMAE where the concept is the same; the defaults are UMT-B/16 at
8 frames x 224 px as released by the official code (tubelet 1, LayerNorm eps 1e-6, q/v bias, no class token).
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers.configuration_utils import PreTrainedConfig

from .config_validation import NON_NEGATIVE, POSITIVE, POSITIVE_REAL, PROBABILITY, ValidatedConfigMixin, check_config_fields

# Architecture presets of the released models (official_umt.md §1.1, §1.4). Use them with
# `UMTConfig.from_preset("umt-b16", num_labels=400)`; extra keyword arguments override preset values.
UMT_PRESETS: dict[str, dict] = {
    "umt-b16": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        drop_path_rate=0.1,
        uta_output_dim=512,  # CLIP-B/16 teacher projection width
    ),
    "umt-l16": dict(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        drop_path_rate=0.2,
        uta_output_dim=768,  # CLIP-L/14 teacher projection width
    ),
}

# Bounds of the numeric fields (types and finiteness come from the annotations; see config_validation.py).
# tubelet_size, uta_num_layers and the dropouts keep their own messages in `validate_architecture`.
UMT_FIELD_RANGES = {
    "image_size": POSITIVE, "patch_size": POSITIVE, "num_channels": POSITIVE, "num_frames": POSITIVE,
    "hidden_size": POSITIVE, "num_hidden_layers": NON_NEGATIVE, "num_attention_heads": POSITIVE,
    "intermediate_size": POSITIVE, "layer_norm_eps": POSITIVE_REAL, "head_init_scale": NON_NEGATIVE,
    "pos_embed_reference_frames": POSITIVE, "pos_embed_reference_grid": POSITIVE, "initializer_range": NON_NEGATIVE,
    "uta_layer_interval": POSITIVE, "uta_output_dim": POSITIVE, "uta_head_norm_eps": POSITIVE_REAL,
    "hidden_dropout_prob": PROBABILITY, "attention_probs_dropout_prob": PROBABILITY, "drop_path_rate": PROBABILITY,
    "classifier_dropout": PROBABILITY,
}

_POOLINGS = ("mean", "temporal_mean")
_POS_RULES = ("interpolated", "direct")
_INITIALIZERS = ("trunc_normal", "xavier_uniform")


def _as_pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"`{name}` must be an int or a pair of ints, got {value!r}.")


@strict
class UMTConfig(ValidatedConfigMixin, PreTrainedConfig):
    r"""
    Configuration of a UMT video encoder and its heads.

    Args:
        image_size (`int` or pair, defaults to 224): input resolution (H, W) of each frame.
        patch_size (`int` or pair, defaults to 16): spatial patch size of the Conv3d patch embedding.
        num_channels (`int`, defaults to 3): input channels.
        num_frames (`int`, defaults to 8): frames per clip the model is built for.
        tubelet_size (`int`, defaults to 1): temporal size of the patch embedding (every released UMT uses 1).
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size: transformer width, depth, heads, MLP width.
        hidden_act (`str`, defaults to `"gelu"`): MLP activation (exact erf GELU as the official code).
        hidden_dropout_prob (`float`): dropout after attention/MLP projections and on the embeddings (official `drop_rate`).
        attention_probs_dropout_prob (`float`): dropout on attention probabilities.
        drop_path_rate (`float`): stochastic depth; block i uses `linspace(0, rate, depth)[i]`.
        layer_norm_eps (`float`, defaults to 1e-6): LayerNorm epsilon everywhere in the student.
        qkv_bias (`bool`, defaults to True): learnable q and v biases (k never has a bias, as in the official code).
        use_final_norm (`bool`, defaults to False): apply a LayerNorm to the last hidden state. Stage-1 and Stage-2
            encoders have it (`encoder.norm`); fine-tuned classifiers do not (they normalise the pooled vector instead).
        pooling (`str`, defaults to `"mean"`): `"mean"` averages all tokens -> (B, C); `"temporal_mean"` averages per
            frame -> (B, T, C) (Stage-2 `keep_temporal`). The pooled vector then goes through `pooler.norm`
            (official `fc_norm` / `pool_norm`).
        classifier_dropout (`float`): dropout before the classification head (official `fc_drop_rate`).
        head_init_scale (`float`, defaults to 0.001): the classification head's initial weights are scaled by this.
        position_embedding_type (`str`, defaults to `"interpolated"`): how the fixed 1-D sin-cos table is made for a
            layout other than the reference one. `"interpolated"` follows the official fine-tuning rule (table built for
            `pos_embed_reference_frames` x grid x grid, then bicubic in space, linear in time); `"direct"` builds the table
            for the new number of positions directly (official Stage-1 pre-training and Stage 2). Both agree at the
            reference layout (8 x 14 x 14 for patch 16).
        pos_embed_reference_frames (`int`, defaults to 8), pos_embed_reference_grid (`int`, optional): the reference
            layout; the grid defaults to 14 (16 when `patch_size` is 14, as the official code).
        initializer_range (`float`): std of the truncated-normal init.
        initializer_type (`str`): `"trunc_normal"` (official fine-tuning) or `"xavier_uniform"` (official pre-training).
        uta_num_layers (`int`, optional): K, the number of last student layers aligned with the teacher; defaults to
            6 (the official value) or the depth when the model has fewer layers.
        uta_layer_interval (`int`, defaults to 1): spacing of the aligned layers counted from the last one.
        uta_output_dim (`int`, defaults to 512): teacher feature width (CLIP projection dim) the heads map to.
        uta_head_norm_eps (`float`, defaults to 1e-6): LayerNorm epsilon of the alignment heads (Stage 2 uses 1e-5).
        uta_l2_normalize (`bool`, defaults to True): L2-normalise the head outputs (Stage 1) or not (Stage 2).
    """

    model_type = "umt"

    image_size: int | list[int] | tuple[int, int] = 224
    patch_size: int | list[int] | tuple[int, int] = 16
    num_channels: int = 3
    num_frames: int = 8
    tubelet_size: int = 1
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    drop_path_rate: float | int = 0.0
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    use_final_norm: bool = False
    pooling: str = "mean"
    classifier_dropout: float | int = 0.0
    head_init_scale: float | int = 0.001
    position_embedding_type: str = "interpolated"
    pos_embed_reference_frames: int = 8
    pos_embed_reference_grid: int | None = None
    initializer_range: float = 0.02
    initializer_type: str = "trunc_normal"
    uta_num_layers: int | None = None
    uta_layer_interval: int = 1
    uta_output_dim: int = 512
    uta_head_norm_eps: float = 1e-6
    uta_l2_normalize: bool = True

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "UMTConfig":
        """Build a config from a named preset (`"umt-b16"`, `"umt-l16"`); keyword arguments override preset fields."""
        if name not in UMT_PRESETS:
            raise ValueError(f"`name` must be one of {sorted(UMT_PRESETS)}, got {name!r}.")
        return cls(**{**UMT_PRESETS[name], **overrides})

    # ---- derived geometry -------------------------------------------------------------------------------------
    @property
    def image_hw(self) -> tuple[int, int]:
        return _as_pair(self.image_size, "image_size")

    @property
    def patch_hw(self) -> tuple[int, int]:
        return _as_pair(self.patch_size, "patch_size")

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """(T', H', W'): the token grid for `num_frames` x `image_size`."""
        (h, w), (ph, pw) = self.image_hw, self.patch_hw
        return self.num_frames // self.tubelet_size, h // ph, w // pw

    @property
    def num_patches(self) -> int:
        t, h, w = self.grid_size
        return t * h * w

    @property
    def reference_grid(self) -> int:
        if self.pos_embed_reference_grid is not None:
            return self.pos_embed_reference_grid
        return 16 if self.patch_hw == (14, 14) else 14

    @property
    def uta_layer_indices(self) -> list[int]:
        """0-based indices of the aligned student layers, ascending (official `return_index`, sorted)."""
        idx = [self.num_hidden_layers - int(i * self.uta_layer_interval) - 1 for i in range(self.num_uta_layers)]
        return sorted(idx)

    @property
    def num_uta_layers(self) -> int:
        """K: `uta_num_layers`, or min(6, depth) when unset."""
        return min(6, self.num_hidden_layers) if self.uta_num_layers is None else self.uta_num_layers

    def validate_architecture(self):
        """Part of `@strict` validation: every message names the offending field, its value and what is expected."""
        check_config_fields(self, UMT_FIELD_RANGES)
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads})."
            )
        (h, w), (ph, pw) = self.image_hw, self.patch_hw
        if h % ph or w % pw:
            raise ValueError(f"`image_size` {(h, w)} must be divisible by `patch_size` {(ph, pw)}.")
        if self.tubelet_size < 1 or self.num_frames % self.tubelet_size:
            raise ValueError(
                f"`num_frames` ({self.num_frames}) must be a positive multiple of `tubelet_size` ({self.tubelet_size})."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate", "classifier_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {value}.")
        if self.pooling not in _POOLINGS:
            raise ValueError(f"`pooling` must be one of {_POOLINGS}, got {self.pooling!r}.")
        if self.position_embedding_type not in _POS_RULES:
            raise ValueError(
                f"`position_embedding_type` must be one of {_POS_RULES}, got {self.position_embedding_type!r}."
            )
        if self.initializer_type not in _INITIALIZERS:
            raise ValueError(f"`initializer_type` must be one of {_INITIALIZERS}, got {self.initializer_type!r}.")
        if self.head_init_scale < 0:
            raise ValueError(f"`head_init_scale` must be >= 0, got {self.head_init_scale}.")
        if not 0 <= self.num_uta_layers <= self.num_hidden_layers:
            raise ValueError(
                f"`uta_num_layers` ({self.uta_num_layers}) must be between 0 and `num_hidden_layers` "
                f"({self.num_hidden_layers})."
            )
        if self.num_uta_layers and min(self.uta_layer_indices) < 0:
            raise ValueError(
                f"`uta_layer_interval` ({self.uta_layer_interval}) x `uta_num_layers` ({self.uta_num_layers}) reaches "
                f"below layer 0 of {self.num_hidden_layers}."
            )


@strict
class UMTDetectionConfig(UMTConfig):
    r"""
    Configuration of `UMTForVideoActionDetection` (AVA-style action detection): a `UMTConfig` of its own model type,
    so that `AutoModel` loads the detector from a saved folder. Same fields; the detector always reads final-norm
    tokens (`use_final_norm=True`). `num_labels` is the number of actions (AVA: 80 ids, 60 evaluated).
    """

    model_type = "umt_detection"

    use_final_norm: bool = True

    def validate_architecture(self):
        """`UMTConfig`'s checks, and at least one action (`num_labels`, the logit columns of every box)."""
        super().validate_architecture()
        if self.num_labels < 1:
            raise ValueError(f"`num_labels` (the actions a detector scores) must be >= 1, got {self.num_labels}.")


__all__ = ["UMTConfig", "UMTDetectionConfig", "UMT_FIELD_RANGES", "UMT_PRESETS"]
