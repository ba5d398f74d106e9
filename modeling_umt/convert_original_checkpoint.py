"""Convert official UMT single-modality checkpoints (OpenGVLab/unmasked_teacher) to and from this package.

Two checkpoint families are understood (official_umt.md §7 a, b):

* **Stage-1 pretrained student** (`b16_ptk710_f8_res224.pth`, ...): keys `encoder.*` (patch embedding, blocks,
  final `encoder.norm`) and `clip_decoder.{k}.{head,norm}.*` (the K alignment heads) -> `UMTForPreTraining`.
* **Fine-tuned classifier** (`..._ftk400_f16_res224.pth`, ...): keys `patch_embed.*`, `blocks.*`, `fc_norm.*`,
  `head.*`, plus `pos_embed` [1, N, C] for layouts other than 8 x 14 x 14 -> `UMTForVideoClassification`.
* **Stage-2 multi-modality** (`b16_25m.pth`, `ret_msrvtt_b16_25m.pth`, ...; official_umt.md §7 c): keys
  `vision_encoder.*`, `text_encoder.*`, `vision_proj.*`, `text_proj.*`, `temp`, `itm_head.*` [+ `clip_teacher.*`]
  -> `UMTForVideoTextRetrieval` (see `convert_stage2_state_dict`; pass `--num_frames 12` for retrieval fine-tunes).

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
    if is_stage2_state_dict(official):  # official multi-modality checkpoint -> UMTForVideoTextRetrieval
        if label_file is not None or model_size is not None:
            raise ConversionError("`--label_file` / `--model_size` do not apply to Stage-2 (video-text) checkpoints.")
        return convert_stage2_checkpoint(
            checkpoint, output_dir, num_frames=num_frames or 4, image_size=image_size or 224,
            num_attention_heads=num_attention_heads, model_key=model_key, overwrite=overwrite, log=log,
        )
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
    if arch == _STAGE2_ARCHITECTURE:
        from .modeling_umt_retrieval import UMTForVideoTextRetrieval

        model = UMTForVideoTextRetrieval.from_pretrained(model_dir, dtype=torch.float32 if dtype == "float32" else "auto")
        state = to_official_stage2_state_dict(model)
        obj = state if model_key == "auto" else {model_key: state}
        _write_atomically(output_dir, overwrite, lambda tmp: torch.save(obj, tmp / "model.pth"))
        log(f"{arch} -> official layout ({len(state)} tensors) saved to {output_dir / 'model.pth'}")
        return output_dir / "model.pth"
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



# ----------------------------------------------------------------------------------------------------------------
# Stage 2 (multi-modality): official `UMT` -> UMTForVideoTextRetrieval (official_umt.md §7 c)
# ----------------------------------------------------------------------------------------------------------------
STAGE2 = "stage2"
_STAGE2_ARCHITECTURE = "UMTForVideoTextRetrieval"


def is_stage2_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for official multi-modality checkpoints (`vision_encoder.*` / `text_encoder.*` keys)."""
    return any(k.startswith(("vision_encoder.", "text_encoder.")) for k in state_dict)


def _stage2_text_view(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(BERT keys without prefix, MLM-head keys) of a Stage-2 state dict. Pre-training checkpoints hold
    `text_encoder.bert.*` and `text_encoder.cls.*`; downstream ones `text_encoder.*` (the official `bert.` stripping)."""
    bert, cls = {}, {}
    for key, value in state_dict.items():
        if not key.startswith("text_encoder."):
            continue
        rest = key[len("text_encoder.") :]
        if rest.startswith("bert."):
            bert[rest[len("bert.") :]] = value
        elif rest.startswith("cls."):
            cls[rest[len("cls.") :]] = value
        else:
            bert[rest] = value
    return bert, cls


def infer_stage2_config(
    state_dict: Mapping[str, torch.Tensor],
    *,
    num_frames: int = 4,
    image_size: int = 224,
    num_attention_heads: int | None = None,
    text_num_attention_heads: int | None = None,
):
    """`UMTRetrievalConfig` of an official Stage-2 state dict, from tensor shapes.

    Not visible in the weights: the frame count (official pre-training 4, retrieval fine-tuning 12), the resolution
    (224), and the heads: `num_attention_heads` (video; default the released 12 / 16, else width // 64) and
    `text_num_attention_heads` (default width // 64, as BERT-base / large).
    """
    from transformers import BertConfig

    from .configuration_umt_retrieval import STAGE2_VISION_DEFAULTS, UMTRetrievalConfig

    if any(k.startswith("text_decoder.") for k in state_dict):
        raise ConversionError("This is an official QA checkpoint (`text_decoder.*`): only retrieval / pre-training "
                              "Stage-2 checkpoints convert to UMTForVideoTextRetrieval.")
    w = _require(state_dict, "vision_encoder.encoder.patch_embed.proj.weight")
    hidden, tubelet, patch = int(w.shape[0]), int(w.shape[2]), int(w.shape[3])
    depth = _indices(state_dict, "vision_encoder.encoder.blocks.", "Block")
    intermediate = int(_require(state_dict, "vision_encoder.encoder.blocks.0.mlp.fc1.weight").shape[0])
    heads = num_attention_heads or _HEADS_BY_WIDTH.get(hidden) or max(1, hidden // 64)
    k = _indices(state_dict, "vision_encoder.clip_decoder.", "clip_decoder")
    uta_dim = int(state_dict["vision_encoder.clip_decoder.0.head.weight"].shape[0]) if k else 512
    vision = dict(STAGE2_VISION_DEFAULTS)
    vision.update(
        num_channels=int(w.shape[1]), tubelet_size=tubelet, patch_size=patch, hidden_size=hidden,
        num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=intermediate,
        qkv_bias="vision_encoder.encoder.blocks.0.attn.q_bias" in state_dict, num_frames=num_frames,
        image_size=image_size, uta_num_layers=k, uta_output_dim=uta_dim,
    )
    bert, cls = _stage2_text_view(state_dict)
    words = _require(bert, "embeddings.word_embeddings.weight", "text_encoder.bert.embeddings.word_embeddings.weight")
    text_hidden = int(words.shape[1])
    layers = _indices(bert, "encoder.layer.", "BERT layer")
    fusion = [i for i in range(layers) if f"encoder.layer.{i}.crossattention.self.query.weight" in bert]
    if not fusion or fusion != list(range(fusion[0], layers)):
        raise ConversionError(f"Cross-attention must sit on the last BERT layers; found it on layers {fusion}.")
    text = BertConfig(
        vocab_size=int(words.shape[0]), hidden_size=text_hidden, num_hidden_layers=layers,
        num_attention_heads=text_num_attention_heads or max(1, text_hidden // 64),
        intermediate_size=int(bert["encoder.layer.0.intermediate.dense.weight"].shape[0]),
        max_position_embeddings=int(bert["embeddings.position_embeddings.weight"].shape[0]),
        type_vocab_size=int(bert["embeddings.token_type_embeddings.weight"].shape[0]),
    )
    embed = int(_require(state_dict, "vision_proj.weight").shape[0])
    return UMTRetrievalConfig(
        vision_config=UMTConfig(**vision), text_config=text, fusion_layer=fusion[0], embed_dim=embed,
        use_mlm_head=bool(cls), architectures=[_STAGE2_ARCHITECTURE],
    )


def convert_stage2_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    num_frames: int = 4,
    image_size: int = 224,
    num_attention_heads: int | None = None,
    text_num_attention_heads: int | None = None,
    log: Callable[[str], None] | None = None,
):
    """Official Stage-2 state dict -> (UMTRetrievalConfig, our state dict).

    Renames (ours <- official): vision_model.* <- vision_encoder.encoder.* (blocks as Stage 1, qkv split),
    vision_model.layernorm <- vision_encoder.encoder.norm, vision_model.pooler.norm <- vision_encoder.pool_norm,
    uta_heads.{k}.{dense,norm} <- vision_encoder.clip_decoder.{k}.{head,norm}, text_model.* <- text_encoder.bert.*
    (or text_encoder.* in fine-tuned files), mlm_head.* <- text_encoder.cls.*; vision_proj, text_proj, temp, itm_head
    keep their names. Dropped: `clip_teacher.*` (the frozen teacher: load it with
    `UMTTeacher.from_official_state_dict`), BERT's `position_ids` buffer and the MLM decoder (tied to the word
    embeddings). Any other key is an error naming it.
    """
    log = log or (lambda msg: None)
    config = infer_stage2_config(
        state_dict, num_frames=num_frames, image_size=image_size, num_attention_heads=num_attention_heads,
        text_num_attention_heads=text_num_attention_heads,
    )
    vc = config.vision_config
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(theirs: str, ours: str) -> None:
        out[ours] = _require(state_dict, theirs)
        used.add(theirs)

    ve = "vision_encoder.encoder."
    take(ve + "patch_embed.proj.weight", "vision_model.embeddings.patch_embeddings.projection.weight")
    take(ve + "patch_embed.proj.bias", "vision_model.embeddings.patch_embeddings.projection.bias")
    for b in range(vc.num_hidden_layers):
        src, dst = f"{ve}blocks.{b}.", f"vision_model.encoder.layer.{b}."
        q, k_, v = _require(state_dict, src + "attn.qkv.weight").split(vc.hidden_size, dim=0)
        used.add(src + "attn.qkv.weight")
        out[dst + "attention.query.weight"], out[dst + "attention.key.weight"] = q.clone(), k_.clone()
        out[dst + "attention.value.weight"] = v.clone()
        for s, t in _BLOCK_RENAMES.items():
            if src + s in state_dict:
                take(src + s, dst + t)
    for p in ("weight", "bias"):
        take(f"{ve}norm.{p}", f"vision_model.layernorm.{p}")
        take(f"vision_encoder.pool_norm.{p}", f"vision_model.pooler.norm.{p}")
        for kk in range(vc.num_uta_layers):
            take(f"vision_encoder.clip_decoder.{kk}.head.{p}", f"uta_heads.{kk}.dense.{p}")
            take(f"vision_encoder.clip_decoder.{kk}.norm.{p}", f"uta_heads.{kk}.norm.{p}")
        for head in ("vision_proj", "text_proj", "itm_head"):
            take(f"{head}.{p}", f"{head}.{p}")
    take("temp", "temp")
    for key, value in state_dict.items():
        if not key.startswith("text_encoder."):
            continue
        rest = key[len("text_encoder.") :]
        rest = rest[len("bert.") :] if rest.startswith("bert.") else rest
        used.add(key)
        if rest in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias"):
            tied_to = "embeddings.word_embeddings.weight" if rest.endswith("weight") else "cls.predictions.bias"
            source = state_dict.get(f"text_encoder.bert.{tied_to}", state_dict.get(f"text_encoder.{tied_to}"))
            if source is not None and not torch.equal(value, source):
                raise ConversionError(f"`{key}` differs from `{tied_to}`: the official MLM decoder is tied to it, and "
                                      "UMTForVideoTextRetrieval ties it the same way.")
            continue
        if rest.endswith("position_ids"):
            continue  # a buffer
        out[("mlm_head." + rest[len("cls.") :]) if rest.startswith("cls.") else ("text_model." + rest)] = value
    teacher = [k for k in state_dict if k.startswith("clip_teacher.")]
    used.update(teacher)
    unknown = sorted(set(state_dict) - used)
    if unknown:
        raise ConversionError(f"Stage-2 checkpoint has keys the converter does not know: {_preview(unknown)}.")
    log(f"family: {STAGE2} -> {_STAGE2_ARCHITECTURE} (fusion from BERT layer {config.fusion_layer}, embed_dim "
        f"{config.embed_dim}, MLM head {'yes' if config.use_mlm_head else 'no'}); dropped {len(teacher)} "
        f"clip_teacher.* tensors (the frozen teacher)")
    return config, out


def to_official_stage2_state_dict(model, pretraining_layout: bool | None = None) -> dict[str, torch.Tensor]:
    """Our UMTForVideoTextRetrieval -> a state dict in the official `UMT` layout (inverse of
    `convert_stage2_state_dict`, without `clip_teacher.*`). pretraining_layout: `text_encoder.bert.*` +
    `text_encoder.cls.*` (default when the model has an MLM head) or the downstream `text_encoder.*`."""
    config = model.config
    vc = config.vision_config
    pretraining_layout = model.mlm_head is not None if pretraining_layout is None else pretraining_layout
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    ve = "vision_encoder.encoder."
    out[ve + "patch_embed.proj.weight"] = sd["vision_model.embeddings.patch_embeddings.projection.weight"]
    out[ve + "patch_embed.proj.bias"] = sd["vision_model.embeddings.patch_embeddings.projection.bias"]
    for b in range(vc.num_hidden_layers):
        src, dst = f"vision_model.encoder.layer.{b}.", f"{ve}blocks.{b}."
        out[dst + "attn.qkv.weight"] = torch.cat([sd[src + f"attention.{n}.weight"] for n in ("query", "key", "value")])
        for s, t in _BLOCK_RENAMES.items():
            if src + t in sd:
                out[dst + s] = sd[src + t]
    for p in ("weight", "bias"):
        out[f"{ve}norm.{p}"] = sd[f"vision_model.layernorm.{p}"]
        out[f"vision_encoder.pool_norm.{p}"] = sd[f"vision_model.pooler.norm.{p}"]
        for kk in range(vc.num_uta_layers):
            out[f"vision_encoder.clip_decoder.{kk}.head.{p}"] = sd[f"uta_heads.{kk}.dense.{p}"]
            out[f"vision_encoder.clip_decoder.{kk}.norm.{p}"] = sd[f"uta_heads.{kk}.norm.{p}"]
        for head in ("vision_proj", "text_proj", "itm_head"):
            out[f"{head}.{p}"] = sd[f"{head}.{p}"]
    out["temp"] = sd["temp"]
    bert = "text_encoder.bert." if pretraining_layout else "text_encoder."
    for key, value in sd.items():
        if key.startswith("text_model."):
            out[bert + key[len("text_model.") :]] = value
        elif key.startswith("mlm_head.") and pretraining_layout:
            out["text_encoder.cls." + key[len("mlm_head.") :]] = value
    if pretraining_layout and model.mlm_head is not None:
        out["text_encoder.cls.predictions.decoder.weight"] = sd["text_model.embeddings.word_embeddings.weight"]
        out["text_encoder.cls.predictions.decoder.bias"] = sd["mlm_head.predictions.bias"]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def convert_stage2_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    num_frames: int = 4,
    image_size: int = 224,
    num_attention_heads: int | None = None,
    model_key: str = "auto",
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Official Stage-2 `.pth` (b16_25m.pth, ret_msrvtt_b16_25m.pth, ...) -> a transformers directory, atomically."""
    from .modeling_umt_retrieval import UMTForVideoTextRetrieval

    output_dir = Path(output_dir)
    _prepare_output(output_dir, overwrite)
    official = load_official_checkpoint(checkpoint, model_key)
    config, ours = convert_stage2_state_dict(
        official, num_frames=num_frames, image_size=image_size, num_attention_heads=num_attention_heads, log=log
    )
    model = UMTForVideoTextRetrieval(config)
    result = model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ours.items()}, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("mlm_head.predictions.decoder")]
    if missing or result.unexpected_keys:
        raise ConversionError(
            f"Converted weights do not fit UMTForVideoTextRetrieval: missing {missing}, unexpected "
            f"{list(result.unexpected_keys)}."
        )
    model.tie_weights()
    log(f"UMTForVideoTextRetrieval: video width {config.vision_config.hidden_size} x {config.vision_config.num_hidden_layers}"
        f" blocks, BERT {config.text_config.hidden_size} x {config.text_config.num_hidden_layers} layers, "
        f"{config.vision_config.num_frames} frames x {config.vision_config.image_hw[0]} px")
    _write_atomically(output_dir, overwrite, lambda tmp: model.eval().save_pretrained(tmp))
    log(f"saved to {output_dir}")
    return output_dir


if __name__ == "__main__":
    sys.exit(main())
