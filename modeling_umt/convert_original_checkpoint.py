"""Convert official UMT single-modality checkpoints (OpenGVLab/unmasked_teacher) to and from this package.

Two checkpoint families are understood (official_umt.md §7 a, b):

* **Stage-1 pretrained student** (`b16_ptk710_f8_res224.pth`, ...): keys `encoder.*` (patch embedding, blocks,
  final `encoder.norm`) and `clip_decoder.{k}.{head,norm}.*` (the K alignment heads) -> `UMTForPreTraining`.
* **Fine-tuned classifier** (`..._ftk400_f16_res224.pth`, ...): keys `patch_embed.*`, `blocks.*`, `fc_norm.*`,
  `head.*`, plus `pos_embed` [1, N, C] for layouts other than 8 x 14 x 14 -> `UMTForVideoClassification`.

Either may be stored bare or under `model` / `module` (DeepSpeed). Key mapping (ours <- official):

    umt.embeddings.patch_embeddings.projection.*   <- patch_embed.proj.*
    umt.encoder.layer.{i}.norm{1,2}.*               <- blocks.{i}.norm{1,2}.*
    umt.encoder.layer.{i}.attention.{query,key,value}.weight <- thirds of blocks.{i}.attn.qkv.weight [3C, C]
    umt.encoder.layer.{i}.attention.query.bias      <- blocks.{i}.attn.q_bias   (k has no bias)
    umt.encoder.layer.{i}.attention.value.bias      <- blocks.{i}.attn.v_bias
    umt.encoder.layer.{i}.attention.proj.*          <- blocks.{i}.attn.proj.*
    umt.encoder.layer.{i}.mlp.fc{1,2}.*             <- blocks.{i}.mlp.fc{1,2}.*
    umt.pooler.norm.*, classifier.*                 <- fc_norm.*, head.*                  (classifier)
    umt.layernorm.*, uta_heads.{k}.dense.*, uta_heads.{k}.norm.*
                                                    <- norm.*, clip_decoder.{k}.head.*, clip_decoder.{k}.norm.*
                                                       (after stripping `encoder.`; Stage 1)

The fixed sin-cos position table is never trained by the official code, so it is not a weight here: a stored
`pos_embed` is checked against the table our model computes (`UMTEmbeddings.compute_position_embeddings`) and
then dropped; a checkpoint whose table differs is refused, since the converted model would compute something else.

Command line (writes `model.safetensors` + `config.json` atomically):

    python -m modeling_umt.convert_original_checkpoint --checkpoint X.pth --output_dir DIR \
        [--model_size b16|l16] [--num_frames N] [--image_size S] [--label_file labels.txt|json] \
        [--dtype float32|keep] [--model_key model|module|auto]
    python -m modeling_umt.convert_original_checkpoint --reverse --checkpoint HF_DIR --output_dir DIR
        # writes DIR/model.pth, a state dict in the official key layout
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from .configuration_umt import UMT_PRESETS, UMTConfig
from .modeling_umt import UMTEmbeddings, UMTForPreTraining, UMTForVideoClassification

CLASSIFIER = "classifier"
PRETRAINING = "pretraining"
ARCHITECTURES = {CLASSIFIER: "UMTForVideoClassification", PRETRAINING: "UMTForPreTraining"}
MODEL_CLASSES = {CLASSIFIER: UMTForVideoClassification, PRETRAINING: UMTForPreTraining}

# Released sizes: (hidden, depth) -> preset name; heads are not visible in the weights, so they come from here.
_SIZE_BY_SHAPE = {(768, 12): "b16", (1024, 24): "l16"}
_PRESET_BY_SIZE = {"b16": "umt-b16", "l16": "umt-l16"}
_HEADS_BY_WIDTH = {768: 12, 1024: 16}

# Per-block official suffix -> our suffix, for everything that is a plain rename (qkv is split separately).
_BLOCK_RENAMES = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "attn.q_bias": "attention.query.bias",
    "attn.v_bias": "attention.value.bias",
    "attn.proj.weight": "attention.proj.weight",
    "attn.proj.bias": "attention.proj.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.fc1.weight",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight",
    "mlp.fc2.bias": "mlp.fc2.bias",
}
_CLASSIFIER_RENAMES = {  # official -> ours, fine-tuned classifier head
    "fc_norm.weight": "umt.pooler.norm.weight",
    "fc_norm.bias": "umt.pooler.norm.bias",
    "head.weight": "classifier.weight",
    "head.bias": "classifier.bias",
}
_FINAL_NORM_RENAMES = {"encoder.norm.weight": "umt.layernorm.weight", "encoder.norm.bias": "umt.layernorm.bias"}
_OUR_LAYER = "umt.encoder.layer.{}."
_OUR_PATCH = "umt.embeddings.patch_embeddings.projection."

DEFAULT_POS_EMBED_ATOL = 1e-4


class ConversionError(ValueError):
    """A checkpoint or argument the converter does not understand; the message names the offending keys/values."""


def _preview(keys, limit: int = 12) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


# ----------------------------------------------------------------------------------------------------------------
# Reading official files
# ----------------------------------------------------------------------------------------------------------------
def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def unwrap_state_dict(obj, model_key: str = "auto") -> dict[str, torch.Tensor]:
    """Return the state dict inside a loaded checkpoint object.

    obj: what `torch.load` returned — a bare `{name: tensor}` dict, or a training checkpoint holding it under
    `model` (official `save_model`) or `module` (DeepSpeed). model_key: "model", "module", "model|module"
    (first present wins, as the official `--model_key`), or "auto" (= "model|module", else the dict itself when
    all its values are tensors). Keys prefixed `module.` on every entry (a DDP-wrapped model) are unprefixed.
    """
    if not isinstance(obj, Mapping):
        raise ConversionError(f"The checkpoint holds a {type(obj).__name__}, not a dict of tensors.")
    candidates = ["model", "module"] if model_key == "auto" else model_key.split("|")
    for name in candidates:
        if name not in ("model", "module"):
            raise ConversionError(
                f"`model_key` must be 'model', 'module', 'model|module' or 'auto', got {model_key!r}."
            )
    state = None
    for name in candidates:
        if name in obj and isinstance(obj[name], Mapping):
            state = obj[name]
            break
    if state is None:
        if model_key != "auto" and not _is_state_dict(obj):
            raise ConversionError(
                f"`model_key={model_key!r}` but the checkpoint has no such entry; its top-level keys are: "
                f"{_preview(map(str, obj.keys()))}."
            )
        state = obj
    if not _is_state_dict(state):
        bad = [str(k) for k, v in state.items() if not torch.is_tensor(v)]
        raise ConversionError(
            f"Could not find a state dict in the checkpoint: entries that are not tensors: {_preview(bad)}. "
            f"Pass `--model_key model` or `--model_key module` if the weights are stored under that key."
        )
    state = {str(k): v for k, v in state.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_official_checkpoint(path: str | os.PathLike, model_key: str = "auto") -> dict[str, torch.Tensor]:
    """Read an official `.pth` with `torch.load(weights_only=True)` and return its state dict (see `unwrap_state_dict`).

    `argparse.Namespace` is allow-listed because the official training checkpoints store their `args` next to the
    weights; nothing else outside torch's safe set is unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"`--checkpoint` {str(path)!r} is not a file.")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors come in several types; all mean the same thing here
        raise ConversionError(
            f"torch.load(weights_only=True) could not read {str(path)!r}: {err}. Only plain tensors and containers "
            f"are accepted; re-save the state dict alone (`torch.save(ckpt['model'], 'sd.pth')`) from a trusted copy."
        ) from err
    return unwrap_state_dict(obj, model_key)


# ----------------------------------------------------------------------------------------------------------------
# Official -> ours
# ----------------------------------------------------------------------------------------------------------------
def detect_family(state_dict: Mapping[str, torch.Tensor]) -> str:
    """`"pretraining"` for Stage-1 (`encoder.*` / `clip_decoder.*`), `"classifier"` for fine-tuned (`patch_embed.*`
    + `head.*`); raises ConversionError naming the keys otherwise."""
    keys = set(state_dict)
    if any(k.startswith(("encoder.", "clip_decoder.")) for k in keys):
        return PRETRAINING
    if "patch_embed.proj.weight" in keys and "head.weight" in keys:
        return CLASSIFIER
    raise ConversionError(
        "Unrecognised checkpoint: expected official UMT Stage-1 keys (encoder.*, clip_decoder.*) or fine-tuned "
        f"classifier keys (patch_embed.*, blocks.*, fc_norm.*, head.*); found: {_preview(keys)}."
    )


_BACKBONE_PATTERNS = (
    r"patch_embed\.proj\.(weight|bias)",
    r"blocks\.\d+\.(norm1|norm2)\.(weight|bias)",
    r"blocks\.\d+\.attn\.(qkv\.weight|q_bias|v_bias|proj\.weight|proj\.bias)",
    r"blocks\.\d+\.mlp\.fc[12]\.(weight|bias)",
    r"pos_embed",
)
_KEY_PATTERNS = {
    CLASSIFIER: re.compile("|".join([*_BACKBONE_PATTERNS, r"fc_norm\.(weight|bias)", r"head\.(weight|bias)"])),
    PRETRAINING: re.compile(
        "|".join([*(r"encoder\." + p for p in _BACKBONE_PATTERNS), r"encoder\.norm\.(weight|bias)",
                  r"clip_decoder\.\d+\.(head|norm)\.(weight|bias)"])
    ),
}


def unknown_keys(state_dict: Mapping[str, torch.Tensor], family: str) -> list[str]:
    """Keys that no official checkpoint of `family` holds (e.g. VideoMAE's `decoder.*`, `mask_token`), sorted."""
    return sorted(k for k in state_dict if not _KEY_PATTERNS[family].fullmatch(k))


def _backbone_view(state_dict: Mapping[str, torch.Tensor], family: str) -> dict[str, torch.Tensor]:
    """Strip the Stage-1 `encoder.` prefix so both families share backbone names; `clip_decoder.*` stays as is."""
    if family == CLASSIFIER:
        return dict(state_dict)
    return {k[len("encoder.") :] if k.startswith("encoder.") else k: v for k, v in state_dict.items()}


def _require(sd: Mapping[str, torch.Tensor], key: str, shown: str | None = None) -> torch.Tensor:
    if key not in sd:
        raise ConversionError(f"Checkpoint is missing `{shown or key}`, needed to infer the architecture.")
    return sd[key]


def _indices(sd: Mapping[str, torch.Tensor], prefix: str, what: str) -> int:
    """Count `prefix{i}.` groups and check they are 0..n-1."""
    idx = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if idx and idx != set(range(max(idx) + 1)):
        raise ConversionError(f"{what} indices are not contiguous: found {sorted(idx)}.")
    return len(idx)


def _factor_layout(n: int, patch: int, tubelet: int, num_frames: int | None, image_size: int | None) -> tuple[int, int]:
    """(num_frames, image_size) whose token count (frames/tubelet) * (image/patch)^2 equals n, the pos_embed length.

    Explicit values are honoured (and checked); otherwise 8 frames, then 16, then other divisors are tried.
    """
    if num_frames is not None and image_size is not None:
        tokens = (num_frames // tubelet) * (image_size // patch) ** 2
        if tokens != n:
            raise ConversionError(
                f"`--num_frames {num_frames}` and `--image_size {image_size}` give {tokens} tokens but the "
                f"checkpoint's `pos_embed` has {n}."
            )
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


def infer_config_kwargs(
    state_dict: Mapping[str, torch.Tensor],
    *,
    model_size: str | None = None,
    num_frames: int | None = None,
    image_size: int | None = None,
    num_attention_heads: int | None = None,
) -> dict:
    """UMTConfig keyword arguments for an official state dict, from tensor shapes (plus the overrides given).

    Heads are not visible in the weights: they are `num_attention_heads` when given, else those of the released size
    (`model_size`, or the one matching width x depth: "b16" -> 12, "l16" -> 16), else width // 64. Layout: from
    `pos_embed` [1, N, C] when present (checked against `num_frames` / `image_size` when those are given), else
    `num_frames` / `image_size`, else the released 8 frames x 224 px.
    Returns kwargs that include `architectures` (the target class) and, for classifiers, `num_labels`.
    """
    family = detect_family(state_dict)
    unknown = unknown_keys(state_dict, family)
    if unknown:
        raise ConversionError(
            f"Checkpoint looks like an official UMT {family} checkpoint but has unknown keys: {_preview(unknown)}."
        )
    sd = _backbone_view(state_dict, family)
    pre = "encoder." if family == PRETRAINING else ""
    w = _require(sd, "patch_embed.proj.weight", pre + "patch_embed.proj.weight")
    if w.ndim != 5 or w.shape[3] != w.shape[4]:
        raise ConversionError(f"`patch_embed.proj.weight` must be [C, 3, tubelet, p, p], got {list(w.shape)}.")
    hidden, channels, tubelet, patch = int(w.shape[0]), int(w.shape[1]), int(w.shape[2]), int(w.shape[3])
    depth = _indices(sd, "blocks.", "Block")
    if depth == 0:
        raise ConversionError("Checkpoint has no `blocks.{i}.*` keys.")
    intermediate = int(_require(sd, "blocks.0.mlp.fc1.weight", pre + "blocks.0.mlp.fc1.weight").shape[0])

    if model_size is not None:
        if model_size not in _PRESET_BY_SIZE:
            raise ConversionError(f"`--model_size` must be one of {sorted(_PRESET_BY_SIZE)}, got {model_size!r}.")
        preset = UMT_PRESETS[_PRESET_BY_SIZE[model_size]]
        if (preset["hidden_size"], preset["num_hidden_layers"]) != (hidden, depth):
            raise ConversionError(
                f"`--model_size {model_size}` expects width {preset['hidden_size']} and {preset['num_hidden_layers']} "
                f"blocks, but the checkpoint has width {hidden} and {depth} blocks."
            )
    size = model_size or _SIZE_BY_SHAPE.get((hidden, depth))
    if num_attention_heads is None:
        if size is not None:
            num_attention_heads = UMT_PRESETS[_PRESET_BY_SIZE[size]]["num_attention_heads"]
        elif hidden in _HEADS_BY_WIDTH:
            num_attention_heads = _HEADS_BY_WIDTH[hidden]
        elif hidden % 64 == 0:
            num_attention_heads = hidden // 64
        else:
            raise ConversionError(
                f"Cannot infer the number of attention heads for width {hidden}: pass `--num_attention_heads`."
            )
    if hidden % num_attention_heads:
        raise ConversionError(f"`num_attention_heads` ({num_attention_heads}) must divide the width {hidden}.")

    kwargs: dict = dict(
        num_channels=channels,
        tubelet_size=tubelet,
        patch_size=patch,
        hidden_size=hidden,
        num_hidden_layers=depth,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate,
        qkv_bias="blocks.0.attn.q_bias" in sd,
        layer_norm_eps=1e-6,
        drop_path_rate=UMT_PRESETS[_PRESET_BY_SIZE[size]]["drop_path_rate"] if size else 0.0,
        architectures=[ARCHITECTURES[family]],
    )
    pos = sd.get("pos_embed")
    if pos is not None:
        if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[2] != hidden:
            raise ConversionError(f"`pos_embed` must be [1, N, {hidden}], got {list(pos.shape)}.")
        num_frames, image_size = _factor_layout(int(pos.shape[1]), patch, tubelet, num_frames, image_size)
    kwargs["num_frames"] = 8 if num_frames is None else int(num_frames)
    kwargs["image_size"] = 224 if image_size is None else int(image_size)

    if family == CLASSIFIER:
        head = _require(sd, "head.weight")
        kwargs.update(
            num_labels=int(head.shape[0]),
            use_final_norm=False,
            pooling="mean",
            position_embedding_type="interpolated",
            initializer_type="trunc_normal",
        )
    else:
        num_heads = _indices(sd, "clip_decoder.", "clip_decoder")
        if num_heads == 0:
            raise ConversionError("Stage-1 checkpoint has no `clip_decoder.{k}.*` alignment heads.")
        dec = _require(sd, "clip_decoder.0.head.weight")
        if dec.shape[1] != hidden:
            raise ConversionError(
                f"`clip_decoder.0.head.weight` has input width {dec.shape[1]}, expected the encoder width {hidden}."
            )
        if num_heads > depth:
            raise ConversionError(f"{num_heads} clip_decoder heads but only {depth} blocks.")
        kwargs.update(
            use_final_norm=True,
            position_embedding_type="direct",
            initializer_type="xavier_uniform",
            uta_num_layers=num_heads,
            uta_layer_interval=1,
            uta_output_dim=int(dec.shape[0]),
            uta_head_norm_eps=1e-6,
            uta_l2_normalize=True,
        )
    UMTConfig(**kwargs)  # validates geometry (image divisible by patch, ...) with the config's own messages
    return kwargs


def expected_official_shapes(config: UMTConfig, family: str, with_pos_embed: bool = False) -> dict[str, tuple]:
    """Every key an official checkpoint of this architecture holds, with its shape (prefixes as stored)."""
    c, i = config.hidden_size, config.intermediate_size
    ph, pw = config.patch_hw
    pre = "encoder." if family == PRETRAINING else ""
    shapes = {
        f"{pre}patch_embed.proj.weight": (c, config.num_channels, config.tubelet_size, ph, pw),
        f"{pre}patch_embed.proj.bias": (c,),
    }
    for b in range(config.num_hidden_layers):
        p = f"{pre}blocks.{b}."
        shapes.update({p + s: (c,) for s in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")})
        shapes.update({p + "attn.qkv.weight": (3 * c, c), p + "attn.proj.weight": (c, c), p + "attn.proj.bias": (c,)})
        if config.qkv_bias:
            shapes.update({p + "attn.q_bias": (c,), p + "attn.v_bias": (c,)})
        shapes.update({p + "mlp.fc1.weight": (i, c), p + "mlp.fc1.bias": (i,)})
        shapes.update({p + "mlp.fc2.weight": (c, i), p + "mlp.fc2.bias": (c,)})
    if with_pos_embed:
        shapes[f"{pre}pos_embed"] = (1, config.num_patches, c)
    if family == CLASSIFIER:
        shapes.update({"fc_norm.weight": (c,), "fc_norm.bias": (c,)})
        shapes.update({"head.weight": (config.num_labels, c), "head.bias": (config.num_labels,)})
    else:
        d = config.uta_output_dim
        shapes.update({"encoder.norm.weight": (c,), "encoder.norm.bias": (c,)})
        for k in range(config.num_uta_layers):
            shapes.update({f"clip_decoder.{k}.head.weight": (d, c), f"clip_decoder.{k}.head.bias": (d,)})
            shapes.update({f"clip_decoder.{k}.norm.weight": (d,), f"clip_decoder.{k}.norm.bias": (d,)})
    return shapes


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


def convert_official_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    model_size: str | None = None,
    num_frames: int | None = None,
    image_size: int | None = None,
    num_attention_heads: int | None = None,
    pos_embed_atol: float = DEFAULT_POS_EMBED_ATOL,
    log: Callable[[str], None] | None = None,
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Official state dict (already unwrapped) -> (UMTConfig kwargs, our state dict).

    Every key must be known and have the shape the inferred architecture needs; otherwise ConversionError names the
    unknown / missing / mis-shaped keys. `pos_embed`, when present, is verified (`check_position_embeddings`) and
    dropped. Tensors keep their dtype; `config_kwargs["architectures"][0]` names the target class.
    """
    log = log or (lambda msg: None)
    family = detect_family(state_dict)
    kwargs = infer_config_kwargs(
        state_dict, model_size=model_size, num_frames=num_frames, image_size=image_size,
        num_attention_heads=num_attention_heads,
    )
    config = UMTConfig(**kwargs)
    pos_key = "encoder.pos_embed" if family == PRETRAINING else "pos_embed"
    expected = expected_official_shapes(config, family, with_pos_embed=pos_key in state_dict)
    unknown = set(state_dict) - set(expected)
    missing = set(expected) - set(state_dict)
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown keys: {_preview(unknown)}")
        if missing:
            parts.append(f"missing keys: {_preview(missing)}")
        raise ConversionError(
            f"Checkpoint does not match an official UMT {family} ({ARCHITECTURES[family]}) of the inferred "
            f"architecture: " + "; ".join(parts) + "."
        )
    bad = [
        f"{k} {list(state_dict[k].shape)} (expected {list(s)})"
        for k, s in expected.items()
        if tuple(state_dict[k].shape) != s
    ]
    if bad:
        raise ConversionError(f"Checkpoint tensors have unexpected shapes: {_preview(bad, 6)}.")
    log(f"family: {family} -> {ARCHITECTURES[family]}")

    if pos_key in state_dict:
        diff = check_position_embeddings(state_dict[pos_key], config, atol=pos_embed_atol)
        log(f"pos_embed {list(state_dict[pos_key].shape)} matches the computed "
            f"{config.position_embedding_type!r} table: max |diff| = {diff:.3g}; dropped (not a weight)")

    pre = "encoder." if family == PRETRAINING else ""
    out: dict[str, torch.Tensor] = {}
    out[_OUR_PATCH + "weight"] = state_dict[f"{pre}patch_embed.proj.weight"]
    out[_OUR_PATCH + "bias"] = state_dict[f"{pre}patch_embed.proj.bias"]
    c = config.hidden_size
    for b in range(config.num_hidden_layers):
        src, dst = f"{pre}blocks.{b}.", _OUR_LAYER.format(b)
        q, k, v = state_dict[src + "attn.qkv.weight"].split(c, dim=0)  # rows are [q; k; v]
        out[dst + "attention.query.weight"] = q.clone()
        out[dst + "attention.key.weight"] = k.clone()
        out[dst + "attention.value.weight"] = v.clone()
        for s, t in _BLOCK_RENAMES.items():
            if src + s in state_dict:
                out[dst + t] = state_dict[src + s]
    if family == CLASSIFIER:
        out.update({ours: state_dict[theirs] for theirs, ours in _CLASSIFIER_RENAMES.items()})
    else:
        out.update({ours: state_dict[theirs] for theirs, ours in _FINAL_NORM_RENAMES.items()})
        for k in range(config.num_uta_layers):
            for part, ours in (("head", "dense"), ("norm", "norm")):
                for p in ("weight", "bias"):
                    out[f"uta_heads.{k}.{ours}.{p}"] = state_dict[f"clip_decoder.{k}.{part}.{p}"]
    return kwargs, out


# ----------------------------------------------------------------------------------------------------------------
# Ours -> official
# ----------------------------------------------------------------------------------------------------------------
def _reference_positions(config: UMTConfig) -> int:
    """Token count of the official reference layout (8 x 14 x 14, or 8 x 16 x 16 for patch 14): no pos_embed saved."""
    return (config.pos_embed_reference_frames // config.tubelet_size) * config.reference_grid**2


def to_official_state_dict(model: UMTForVideoClassification | UMTForPreTraining) -> dict[str, torch.Tensor]:
    """Our model -> a state dict in the official key layout (the inverse of `convert_official_state_dict`).

    Classifier -> `patch_embed.*, blocks.*, fc_norm.*, head.*` plus `pos_embed` [1, N, C] when N differs from the
    reference layout (as the official fine-tuning code saves it); pre-training -> `encoder.*, clip_decoder.*`.
    Tensors keep the model's dtype. Raises ConversionError for a model the official code cannot express.
    """
    config = model.config
    if isinstance(model, UMTForVideoClassification):
        family, pre = CLASSIFIER, ""
        if config.use_final_norm or config.pooling != "mean" or config.num_labels <= 0:
            raise ConversionError(
                "The official classifier has no final norm, mean pooling and a linear head: got "
                f"use_final_norm={config.use_final_norm}, pooling={config.pooling!r}, num_labels={config.num_labels}."
            )
    elif isinstance(model, UMTForPreTraining):
        family, pre = PRETRAINING, "encoder."
        if config.uta_layer_interval != 1 or not config.uta_l2_normalize:
            raise ConversionError(
                "The official Stage-1 student aligns the last K blocks (interval 1) with L2-normalised heads: got "
                f"uta_layer_interval={config.uta_layer_interval}, uta_l2_normalize={config.uta_l2_normalize}."
            )
    else:
        raise ConversionError(
            f"`model` must be a UMTForVideoClassification or UMTForPreTraining, got {type(model).__name__}."
        )
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {
        f"{pre}patch_embed.proj.weight": sd[_OUR_PATCH + "weight"],
        f"{pre}patch_embed.proj.bias": sd[_OUR_PATCH + "bias"],
    }
    for b in range(config.num_hidden_layers):
        src, dst = _OUR_LAYER.format(b), f"{pre}blocks.{b}."
        qkv = [sd[src + f"attention.{n}.weight"] for n in ("query", "key", "value")]
        for s, t in _BLOCK_RENAMES.items():
            if src + t in sd:
                out[dst + s] = sd[src + t]
        out[dst + "attn.qkv.weight"] = torch.cat(qkv, dim=0)
        if (src + "attention.key.bias") in sd:
            raise ConversionError(f"`{src}attention.key.bias` exists but the official attention has no k bias.")
    if family == CLASSIFIER:
        out.update({theirs: sd[ours] for theirs, ours in _CLASSIFIER_RENAMES.items()})
        if config.num_patches != _reference_positions(config):  # the official code saves the table only then
            out["pos_embed"] = model.umt.embeddings.position_embeddings.to(sd["classifier.weight"].dtype)
    else:
        out.update({theirs: sd[ours] for theirs, ours in _FINAL_NORM_RENAMES.items()})
        for k in range(config.num_uta_layers):
            for part, ours in (("head", "dense"), ("norm", "norm")):
                for p in ("weight", "bias"):
                    out[f"clip_decoder.{k}.{part}.{p}"] = sd[f"uta_heads.{k}.{ours}.{p}"]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


# ----------------------------------------------------------------------------------------------------------------
# Models, labels, files
# ----------------------------------------------------------------------------------------------------------------
def read_label_file(path: str | os.PathLike, num_labels: int) -> dict[int, str]:
    """id2label from a label file: one name per line (line i = id i), a JSON list, or a JSON dict mapping ids to
    names (`{"0": "abseiling"}`) or names to ids (`{"abseiling": 0}`). The count must equal `num_labels`."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"`--label_file` {str(path)!r} is not a file.")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConversionError(f"`--label_file` {str(path)!r} is not valid JSON: {err}.") from err
        if isinstance(data, list):
            id2label = {i: str(n) for i, n in enumerate(data)}
        elif isinstance(data, dict) and data and all(isinstance(v, int) for v in data.values()):
            id2label = {int(v): str(k) for k, v in data.items()}
        elif isinstance(data, dict) and all(re.fullmatch(r"\d+", str(k)) for k in data):
            id2label = {int(k): str(v) for k, v in data.items()}
        else:
            raise ConversionError(
                f"`--label_file` {str(path)!r} must hold a JSON list of names or a dict id->name / name->id."
            )
    else:
        lines = text.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        id2label = {i: line.strip() for i, line in enumerate(lines)}
    if sorted(id2label) != list(range(num_labels)):
        raise ConversionError(
            f"`--label_file` {str(path)!r} defines {len(id2label)} labels "
            f"(ids {_preview(map(str, sorted(id2label)), 5)}) but the checkpoint's head has {num_labels} classes."
        )
    return id2label


def build_model(
    config_kwargs: dict, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype | None = torch.float32
) -> tuple[UMTForVideoClassification | UMTForPreTraining, list[str], list[str]]:
    """Instantiate the class named by `config_kwargs["architectures"][0]` and load `state_dict` non-strictly.

    dtype: cast the model to this dtype (None keeps float32 for the build, then the state dict's floating dtype).
    Returns (model in eval mode, missing keys, unexpected keys).
    """
    arch = config_kwargs.get("architectures", [None])[0]
    classes = {v.__name__: v for v in MODEL_CLASSES.values()}
    if arch not in classes:
        raise ConversionError(f"`architectures` must name one of {sorted(classes)}, got {arch!r}.")
    model = classes[arch](UMTConfig(**config_kwargs))
    as_float32 = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    result = model.load_state_dict(as_float32, strict=False)
    if dtype is None:
        dtypes = {v.dtype for v in state_dict.values() if v.is_floating_point()}
        dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    model.to(dtype)
    return model.eval(), list(result.missing_keys), list(result.unexpected_keys)


def _prepare_output(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())) and not overwrite:
        raise ConversionError(f"`--output_dir` {str(output_dir)!r} exists and is not empty; pass `--overwrite`.")


def _atomic_publish(tmp: Path, output_dir: Path) -> None:
    """Move the finished temp dir into place; an existing output is replaced only after the new one is complete."""
    backup = None
    if output_dir.exists():
        backup = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
        os.replace(output_dir, backup)
    try:
        os.replace(tmp, output_dir)
    except BaseException:
        if backup is not None:
            os.replace(backup, output_dir)
        raise
    if backup is not None:
        shutil.rmtree(backup) if backup.is_dir() else backup.unlink()


def _write_atomically(output_dir: Path, overwrite: bool, write: Callable[[Path], None]) -> Path:
    _prepare_output(output_dir, overwrite)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    # A hidden sibling (same filesystem, so the final rename is atomic); mkdir honours the umask, unlike mkdtemp.
    tmp = output_dir.with_name(f".{output_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        write(tmp)
        _atomic_publish(tmp, output_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return output_dir


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    model_size: str | None = None,
    num_frames: int | None = None,
    image_size: int | None = None,
    num_attention_heads: int | None = None,
    label_file: str | os.PathLike | None = None,
    dtype: str = "float32",
    model_key: str = "auto",
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Official `.pth` -> a transformers directory (`config.json` + `model.safetensors`), written atomically.

    Nothing is written when the checkpoint is not understood (ConversionError). Returns the output directory.
    """
    if dtype not in ("float32", "keep"):
        raise ConversionError(f"`--dtype` must be 'float32' or 'keep', got {dtype!r}.")
    output_dir = Path(output_dir)
    _prepare_output(output_dir, overwrite)
    official = load_official_checkpoint(checkpoint, model_key)
    kwargs, ours = convert_official_state_dict(
        official, model_size=model_size, num_frames=num_frames, image_size=image_size,
        num_attention_heads=num_attention_heads, log=log,
    )
    if label_file is not None:
        if "num_labels" not in kwargs:
            raise ConversionError("`--label_file` applies to fine-tuned classifiers; this is a Stage-1 checkpoint.")
        id2label = read_label_file(label_file, kwargs.pop("num_labels"))
        kwargs.update(id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model, missing, unexpected = build_model(kwargs, ours, dtype=torch.float32 if dtype == "float32" else None)
    log(f"missing keys: {missing if missing else 'none'}")
    log(f"unexpected keys: {unexpected if unexpected else 'none'}")
    if missing or unexpected:
        raise ConversionError(
            f"Converted weights do not fit {type(model).__name__}: missing {missing}, unexpected {unexpected}."
        )
    c = model.config
    is_classifier = isinstance(model, UMTForVideoClassification)
    heads = f"{c.num_labels} labels" if is_classifier else f"{c.num_uta_layers} UTA heads"
    log(
        f"{type(model).__name__}: width {c.hidden_size}, {c.num_hidden_layers} blocks, {c.num_attention_heads} "
        f"attention heads, {c.num_frames} frames x {c.image_hw[0]} px, dtype {model.dtype}, {heads}"
    )
    _write_atomically(output_dir, overwrite, lambda tmp: model.save_pretrained(tmp))
    log(f"saved to {output_dir}")
    return output_dir


def reverse_checkpoint(
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    dtype: str = "float32",
    model_key: str = "auto",
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """A saved transformers directory -> `output_dir/model.pth` holding the official-layout state dict.

    model_key "model" or "module" wraps the state dict under that key; "auto" writes it bare (what every official
    loader accepts).
    """
    from transformers import AutoConfig

    if dtype not in ("float32", "keep"):
        raise ConversionError(f"`--dtype` must be 'float32' or 'keep', got {dtype!r}.")
    if model_key not in ("auto", "model", "module"):
        raise ConversionError(f"`--model_key` for --reverse must be 'auto', 'model' or 'module', got {model_key!r}.")
    output_dir = Path(output_dir)
    _prepare_output(output_dir, overwrite)
    if not (Path(model_dir) / "config.json").is_file():
        raise ConversionError(
            f"`--checkpoint` {str(model_dir)!r} is not a saved transformers directory (no config.json)."
        )
    config = AutoConfig.from_pretrained(model_dir)
    arch = (config.architectures or [None])[0]
    classes = {v.__name__: v for v in MODEL_CLASSES.values()}
    if arch not in classes:
        raise ConversionError(f"Saved model architecture must be one of {sorted(classes)}, got {arch!r}.")
    model = classes[arch].from_pretrained(model_dir, dtype=torch.float32 if dtype == "float32" else "auto")
    state = to_official_state_dict(model)
    obj = state if model_key == "auto" else {model_key: state}
    _write_atomically(output_dir, overwrite, lambda tmp: torch.save(obj, tmp / "model.pth"))
    log(f"{arch} -> official layout ({len(state)} tensors) saved to {output_dir / 'model.pth'}")
    return output_dir / "model.pth"


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m modeling_umt.convert_original_checkpoint",
        description="Convert an official UMT single-modality checkpoint (Stage-1 pretrained or fine-tuned classifier) "
        "to a transformers directory, or back with --reverse.",
    )
    p.add_argument("--checkpoint", required=True, help="official .pth (or, with --reverse, a saved transformers dir)")
    p.add_argument("--output_dir", required=True, help="directory to create (with --reverse it receives model.pth)")
    p.add_argument("--model_size", choices=sorted(_PRESET_BY_SIZE), help="checked against the shapes; sets the heads")
    p.add_argument("--num_frames", type=int, help="frames the model is built for (default: from pos_embed, else 8)")
    p.add_argument("--image_size", type=int, help="input resolution (default: from pos_embed, else 224)")
    p.add_argument("--num_attention_heads", type=int, help="heads, when the width is not a released one")
    p.add_argument("--label_file", help="class names: one per line, or a JSON list / dict")
    p.add_argument("--dtype", choices=("float32", "keep"), default="float32", help="float32 (default) or keep")
    p.add_argument("--model_key", default="auto", help="model | module | model|module | auto (default)")
    p.add_argument("--reverse", action="store_true", help="transformers dir -> official-layout model.pth")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output_dir")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 on success, 1 on a checkpoint or argument it cannot handle)."""
    args = _parser().parse_args(argv)
    try:
        if args.reverse:
            for name in ("model_size", "num_frames", "image_size", "num_attention_heads", "label_file"):
                if getattr(args, name) is not None:
                    raise ConversionError(f"`--{name}` does not apply to --reverse (the saved config is used).")
            reverse_checkpoint(args.checkpoint, args.output_dir, dtype=args.dtype, model_key=args.model_key,
                               overwrite=args.overwrite)
        else:
            convert_checkpoint(
                args.checkpoint, args.output_dir, model_size=args.model_size, num_frames=args.num_frames,
                image_size=args.image_size, num_attention_heads=args.num_attention_heads, label_file=args.label_file,
                dtype=args.dtype, model_key=args.model_key, overwrite=args.overwrite,
            )
    except ValueError as err:  # ConversionError and UMTConfig's validation errors
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
