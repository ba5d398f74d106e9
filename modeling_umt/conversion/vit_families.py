"""The single-modality families: the Stage-1 student (with its UTA `clip_decoder.*` heads) and the fine-tuned
classifier (official_umt.md §7 a, b), plus `infer_vit`, the video-encoder inference every family shares."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch

from ..configuration_umt import UMT_PRESETS, UMTConfig
from ..modeling_umt import UMTEmbeddings, UMTForPreTraining, UMTForVideoClassification
from .base import (
    RELEASED_VIT_HEADS,
    ConversionError,
    Family,
    Settings,
    block_count,
    majority_dim,
    pick_heads,
)
from .keymap import norm_key_map, uta_key_map, vit_key_map
from .reading import id2label_from_file

__all__ = ["STAGE1", "CLASSIFIER", "infer_vit", "check_position_embeddings", "DEFAULT_POS_EMBED_ATOL"]

DEFAULT_POS_EMBED_ATOL = 1e-4
_PRESET_BY_SIZE = {"b16": "umt-b16", "l16": "umt-l16"}
_BACKBONE_PATTERNS = (
    r"patch_embed\.proj\.(weight|bias)",
    r"blocks\.\d+\.(norm1|norm2)\.(weight|bias)",
    r"blocks\.\d+\.attn\.(qkv\.weight|q_bias|v_bias|proj\.weight|proj\.bias)",
    r"blocks\.\d+\.mlp\.fc[12]\.(weight|bias)",
)


def backbone_pattern(prefix: str) -> str:
    """Regex alternatives of every official ViT key under `prefix` (final norm included)."""
    return "|".join([*(re.escape(prefix) + p for p in _BACKBONE_PATTERNS), re.escape(prefix) + r"norm\.(weight|bias)"])


def _factor_layout(n: int, patch: int, tubelet: int, num_frames: int | None, image_size: int | None) -> tuple[int, int]:
    """(num_frames, image_size) whose token count (frames/tubelet) * (image/patch)^2 equals n, the pos_embed length.

    Explicit values are honoured (and checked); otherwise 8 frames, then 16, then other divisors are tried.
    """
    if num_frames is not None and image_size is not None:
        tokens = (num_frames // tubelet) * (image_size // patch) ** 2
        if tokens != n:
            raise ConversionError(f"`--num_frames {num_frames}` and `--image_size {image_size}` give {tokens} tokens "
                                  f"but the checkpoint's `pos_embed` has {n}.")
        return num_frames, image_size
    if image_size is not None:
        g2 = (image_size // patch) ** 2
        if image_size % patch or n % g2:
            raise ConversionError(f"`--image_size {image_size}` does not divide the checkpoint's {n} position tokens.")
        return n // g2 * tubelet, image_size
    if num_frames is not None:
        t = num_frames // tubelet
        g = round((n / t) ** 0.5) if n % t == 0 else 0
        if num_frames % tubelet or g * g * t != n:
            raise ConversionError(f"`--num_frames {num_frames}` does not fit the checkpoint's {n} position tokens.")
        return num_frames, g * patch
    for t in [8 // tubelet, 16 // tubelet] + list(range(1, n + 1)):
        if t and n % t == 0:
            g = round((n // t) ** 0.5)
            if g * g * t == n:
                return t * tubelet, g * patch
    raise ConversionError(f"Cannot factor the checkpoint's {n} position tokens into frames x grid x grid.")


def infer_vit(sd: Mapping[str, torch.Tensor], prefix: str, settings: Settings, *, frames: int, image_size: int,
              layout_why: str, saved_vision: Mapping | None) -> dict:
    """UMTConfig keywords of the official ViT stored under `prefix`: shapes from the weights (each size by majority
    over the tensors that carry it), heads by `pick_heads`, and the layout from `{prefix}pos_embed` when stored, else
    from the flags / stored config / the family's `frames` x `image_size` (`layout_why` says why)."""
    saved_vision = saved_vision or {}
    w = sd.get(f"{prefix}patch_embed.proj.weight")
    if w is None or w.ndim != 5 or w.shape[3] != w.shape[4]:
        shape = None if w is None else list(w.shape)
        raise ConversionError(f"`{prefix}patch_embed.proj.weight` must be a [C, 3, tubelet, p, p] tensor, got {shape}.")
    depth = block_count(sd, f"{prefix}blocks.", "Block")
    if depth == 0:
        raise ConversionError(f"Checkpoint has no `{prefix}blocks.{{i}}.*` keys.")
    blocks = [f"{prefix}blocks.{i}." for i in range(depth)]
    hidden = majority_dim(sd, [(f"{prefix}patch_embed.proj.weight", 0), (f"{prefix}patch_embed.proj.bias", 0)]
                          + [(b + n, 0) for b in blocks for n in ("norm1.weight", "norm2.weight", "attn.proj.bias")],
                          "encoder width")
    intermediate = majority_dim(sd, [(b + n, d) for b in blocks for n, d in
                                     (("mlp.fc1.weight", 0), ("mlp.fc1.bias", 0), ("mlp.fc2.weight", 1))], "MLP width")
    tubelet, patch = int(w.shape[2]), int(w.shape[3])
    size = settings.flags.get("model_size")
    if size is not None:
        if size not in _PRESET_BY_SIZE:
            raise ConversionError(f"`--model_size` must be one of {sorted(_PRESET_BY_SIZE)}, got {size!r}.")
        preset = UMT_PRESETS[_PRESET_BY_SIZE[size]]
        if (preset["hidden_size"], preset["num_hidden_layers"]) != (hidden, depth):
            raise ConversionError(f"`--model_size {size}` expects width {preset['hidden_size']} and "
                                  f"{preset['num_hidden_layers']} blocks, but the checkpoint has width {hidden} and "
                                  f"{depth} blocks.")
        settings.flags.setdefault("num_attention_heads", preset["num_attention_heads"])
    heads = pick_heads(settings, "num_attention_heads", hidden, depth, RELEASED_VIT_HEADS,
                       saved_vision.get("num_attention_heads"), "video ViT")
    pos = sd.get(f"{prefix}pos_embed")
    if pos is not None:
        if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[2] != hidden:
            raise ConversionError(f"`{prefix}pos_embed` must be [1, N, {hidden}], got {list(pos.shape)}.")
        frames, image_size = _factor_layout(int(pos.shape[1]), patch, tubelet, settings.flags.get("num_frames"),
                                            settings.flags.get("image_size"))
        frames = settings.pick("num_frames", weights=frames)
        image_size = settings.pick("image_size", weights=image_size)
    else:
        frames = settings.pick("num_frames", saved=saved_vision.get("num_frames"), default=frames, why=layout_why)
        image_size = settings.pick("image_size", saved=saved_vision.get("image_size"), default=image_size,
                                   why=layout_why)
    return dict(
        num_channels=int(w.shape[1]), tubelet_size=tubelet, patch_size=patch, hidden_size=hidden,
        num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=intermediate,
        qkv_bias=f"{prefix}blocks.0.attn.q_bias" in sd, num_frames=frames, image_size=image_size, layer_norm_eps=1e-6,
    )


def _drop_path(settings: Settings, width: int, depth: int) -> float:
    released = {(UMT_PRESETS[p]["hidden_size"], UMT_PRESETS[p]["num_hidden_layers"]): UMT_PRESETS[p]["drop_path_rate"]
                for p in _PRESET_BY_SIZE.values()}
    value = released.get((width, depth), 0.0)
    rate = settings.saved_value("drop_path_rate")
    rate = value if rate is None else rate
    source = "the config stored by --reverse" if settings.saved else "the released value, 0 for other sizes"
    settings.log(f"  drop_path_rate = {rate!r} (training only; {source})")
    return rate


def check_position_embeddings(
    pos_embed: torch.Tensor, config: UMTConfig, atol: float = DEFAULT_POS_EMBED_ATOL
) -> float:
    """Compare a stored official `pos_embed` [1, N, C] with the table our model computes for `config`.

    Returns the max abs difference (in float32). Raises ConversionError when it exceeds `atol` plus the rounding
    step of the stored dtype (fp16 checkpoints store the table rounded to ~1e-3).
    """
    ours = UMTEmbeddings(config).position_embeddings
    if tuple(pos_embed.shape) != tuple(ours.shape):
        raise ConversionError(f"`pos_embed` has shape {list(pos_embed.shape)}, the model needs {list(ours.shape)}.")
    diff = (pos_embed.float() - ours).abs().max().item()
    tol = atol + (torch.finfo(pos_embed.dtype).eps if pos_embed.dtype != torch.float32 else 0.0)
    if not diff <= tol:
        raise ConversionError(
            f"`pos_embed` differs from the {config.position_embedding_type!r} sin-cos table for "
            f"{config.num_frames} frames x {config.image_hw[0]} px by up to {diff:.3g} (> {tol:.3g}): the converted "
            f"model would not compute what the checkpoint computed. Check `--num_frames` / `--image_size`."
        )
    return diff


def _pos_embed_checker(key: str) -> Callable:
    def check(sd: Mapping[str, torch.Tensor], config: UMTConfig, log: Callable[[str], None]) -> None:
        if key in sd:
            diff = check_position_embeddings(sd[key], config)
            log(f"pos_embed {list(sd[key].shape)} matches the computed {config.position_embedding_type!r} table: "
                f"max |diff| = {diff:.3g}; dropped (not a weight)")

    return check


def _infer_classifier(sd: Mapping[str, torch.Tensor], settings: Settings) -> dict:
    layout = "the released layout; a classifier of another layout stores pos_embed"
    kwargs = infer_vit(sd, "", settings, frames=8, image_size=224, layout_why=layout, saved_vision=settings.saved)
    num_labels = majority_dim(sd, [("head.weight", 0), ("head.bias", 0)], "number of classes")
    kwargs.update(
        num_labels=num_labels, use_final_norm=False, pooling="mean", position_embedding_type="interpolated",
        initializer_type="trunc_normal", drop_path_rate=_drop_path(settings, kwargs["hidden_size"],
                                                                   kwargs["num_hidden_layers"]),
    )
    return name_labels(kwargs, settings, num_labels, "the checkpoint stores no class names")


def name_labels(kwargs: dict, settings: Settings, num_labels: int, default_why: str) -> dict:
    """Add id2label / label2id to a classifier-like config's `kwargs`: from `--label_file`, else from the config a
    `--reverse` stored, else none (LABEL_i, logged with `default_why`). Returns `kwargs`."""
    if settings.flags.get("label_file") is not None:
        kwargs["id2label"] = id2label_from_file(settings.flags["label_file"], num_labels)
        settings.log(f"  labels = {num_labels} names (flag --label_file)")
    elif len(settings.saved_value("id2label") or {}) == num_labels:
        kwargs["id2label"] = {int(k): v for k, v in settings.saved["id2label"].items()}
        settings.log(f"  labels = {num_labels} names (from the config stored by --reverse)")
    else:
        settings.log(f"  labels = LABEL_0 .. LABEL_{num_labels - 1} (default: {default_why}; set --label_file to name "
                     "them)")
    if "id2label" in kwargs:
        kwargs["label2id"] = {v: k for k, v in kwargs["id2label"].items()}
    return kwargs


def _infer_stage1(sd: Mapping[str, torch.Tensor], settings: Settings) -> dict:
    kwargs = infer_vit(sd, "encoder.", settings, frames=8, image_size=224, layout_why="the official Stage-1 "
                       "pre-training layout", saved_vision=settings.saved)
    heads = block_count(sd, "clip_decoder.", "clip_decoder")
    if heads == 0:
        raise ConversionError("Stage-1 checkpoint has no `clip_decoder.{k}.*` alignment heads.")
    if heads > kwargs["num_hidden_layers"]:
        raise ConversionError(f"{heads} clip_decoder heads but only {kwargs['num_hidden_layers']} blocks.")
    kwargs.update(
        use_final_norm=True, position_embedding_type="direct", initializer_type="xavier_uniform",
        uta_num_layers=heads, uta_layer_interval=1, uta_head_norm_eps=1e-6, uta_l2_normalize=True,
        uta_output_dim=majority_dim(sd, [(f"clip_decoder.{k}.head.weight", 0) for k in range(heads)], "UTA width"),
        drop_path_rate=_drop_path(settings, kwargs["hidden_size"], kwargs["num_hidden_layers"]),
    )
    return kwargs


def _classifier_map(config: UMTConfig):
    return (vit_key_map(config.num_hidden_layers, config.qkv_bias, "", "umt.", final_norm=False)
            + norm_key_map("fc_norm", "umt.pooler.norm") + norm_key_map("head", "classifier"))


def _stage1_map(config: UMTConfig):
    return (vit_key_map(config.num_hidden_layers, config.qkv_bias, "encoder.", "umt.", final_norm=True)
            + uta_key_map(config.num_uta_layers, "clip_decoder."))


def _classifier_pos_embed(model: UMTForVideoClassification) -> dict[str, torch.Tensor]:
    """The official fine-tuning code saves its table only for layouts other than the reference (8 x 14 x 14)."""
    c = model.config
    reference = (c.pos_embed_reference_frames // c.tubelet_size) * c.reference_grid**2
    if c.num_patches == reference:
        return {}
    return {"pos_embed": model.umt.embeddings.position_embeddings.to(model.classifier.weight.dtype)}


def _classifier_exportable(model: UMTForVideoClassification) -> None:
    c = model.config
    if c.use_final_norm or c.pooling != "mean" or c.num_labels <= 0:
        raise ConversionError("The official classifier has no final norm, mean pooling and a linear head: got "
                              f"use_final_norm={c.use_final_norm}, pooling={c.pooling!r}, num_labels={c.num_labels}.")


def _stage1_exportable(model: UMTForPreTraining) -> None:
    c = model.config
    if c.uta_layer_interval != 1 or not c.uta_l2_normalize:
        raise ConversionError("The official Stage-1 student aligns the last K blocks (interval 1) with L2-normalised "
                              f"heads: got uta_layer_interval={c.uta_layer_interval}, "
                              f"uta_l2_normalize={c.uta_l2_normalize}.")


CLASSIFIER = Family(
    name="classifier", description="official fine-tuned classifier", architecture="UMTForVideoClassification",
    config_class=UMTConfig, model_class=UMTForVideoClassification,
    # an AVA detector has the same keys but a final `norm` and no `fc_norm` (detection_families.DETECTION)
    matches=lambda keys: "patch_embed.proj.weight" in keys and "head.weight" in keys and "norm.weight" not in keys,
    key_pattern=re.compile("|".join([backbone_pattern(""), "pos_embed", r"fc_norm\.(weight|bias)",
                                     r"head\.(weight|bias)"])),
    infer_config=_infer_classifier, key_map=_classifier_map, 
    dropped=((r"pos_embed", "the fixed sin-cos table, checked against ours"),),
    check_extra=_pos_embed_checker("pos_embed"), extra_official=_classifier_pos_embed,
    check_exportable=_classifier_exportable,
    flags=("model_size", "num_frames", "image_size", "num_attention_heads", "label_file"),
)

STAGE1 = Family(
    name="stage1", description="official Stage-1 pre-trained student", architecture="UMTForPreTraining",
    config_class=UMTConfig, model_class=UMTForPreTraining,
    matches=lambda keys: any(k.startswith(("encoder.", "clip_decoder.")) for k in keys),
    key_pattern=re.compile("|".join([backbone_pattern("encoder."), r"encoder\.pos_embed",
                                     r"clip_decoder\.\d+\.(head|norm)\.(weight|bias)"])),
    infer_config=_infer_stage1, key_map=_stage1_map, 
    dropped=((r"encoder\.pos_embed", "the fixed sin-cos table, checked against ours"),),
    check_extra=_pos_embed_checker("encoder.pos_embed"), check_exportable=_stage1_exportable,
)
