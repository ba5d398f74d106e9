"""Official state dict <-> ours for every family, and the file-level commands built on it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer

from processors.fileio import publish_directory, staging_path

from ..publishing import complete_model_folder
from .base import ConversionError, Family, Settings, preview
from .families import FAMILIES, detect_family, family_of_model
from .reading import SAVED_CONFIG_KEY, check_weights, load_official_checkpoint

__all__ = ["convert_state_dict", "build_model", "to_official_state_dict", "convert_checkpoint", "reverse_checkpoint"]

_DTYPES = ("float32", "keep")
# Fields of a saved config that describe the saving, not the model; not stored by --reverse.
_SAVING_METADATA = ("dtype", "torch_dtype", "transformers_version", "_name_or_path")


def _config_to_store(config: Mapping) -> dict:
    """`config.to_dict()` without `_SAVING_METADATA`, nested configs included."""
    return {k: _config_to_store(v) if isinstance(v, dict) and k.endswith("_config") else v
            for k, v in config.items() if k not in _SAVING_METADATA}


def _make_config(family: Family, saved: Mapping | None, kwargs: dict):
    """Our config: the stored one (if any) with every inferred field replaced, nested configs merged field by field."""
    merged = dict(saved or {})
    for name, value in kwargs.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict) and name.endswith("_config"):
            value = {**merged[name], **value}
        merged[name] = value
    merged["architectures"] = [family.architecture]
    return family.config_class.from_dict(merged)


def _expected_official(family: Family, config) -> dict[str, torch.Size]:
    """Every official key a checkpoint of this config holds, with its shape: our model's state dict (built on the
    meta device: shapes only) through the family's key map."""
    with torch.device("meta"):
        model = family.model_class(config)
    official = family.key_map(config).to_official(model.state_dict())
    return {k: v.shape for k, v in official.items()}


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    saved_config: Mapping | None = None,
    log: Callable[[str], None] | None = None,
    **flags,
):
    """Official state dict (already unwrapped) -> (our config, our state dict), for any family of the table.

    flags: the settings the weights do not give — model_size, num_frames, image_size, num_attention_heads,
    text_num_attention_heads, text_pooling, fusion_layer, label_file — each printed with where its value came from
    (`Settings`). saved_config: the config a `--reverse` export stored in the checkpoint (supplies every setting no
    flag gives). Unknown, missing and mis-shaped keys, non-float or non-finite weights, untied tied tensors and a
    stored `pos_embed` that differs from ours are ConversionErrors naming the keys. Tensors keep their dtype.
    """
    log = log or (lambda message: None)
    family = detect_family(state_dict)
    refused = sorted(name for name, value in flags.items() if value is not None and name not in family.flags)
    if refused:
        raise ConversionError(f"`--{refused[0]}` does not apply to an {family.description}.")
    dropped = family.dropped_keys(state_dict)
    summary = "; ".join(f"dropped {len(keys)} {why}" for why, keys in dropped.items()) or "nothing dropped"
    log(f"family: {family.name} ({family.description}) -> {family.architecture}; {summary}")
    unknown = [k for k in state_dict if not family.key_pattern.fullmatch(k)]
    if unknown:
        raise ConversionError(
            f"Checkpoint looks like an {family.description} but has unknown keys: {preview(unknown)}."
        )
    saved_arch = (saved_config or {}).get("architectures") or [family.architecture]
    if saved_arch[0] != family.architecture:
        raise ConversionError(f"The stored config is for {saved_arch[0]}, but the weights are an {family.description}.")
    log("settings:")
    config = _make_config(family, saved_config, family.infer_config(state_dict, Settings(flags, saved_config, log)))
    expected = _expected_official(family, config)
    dropped_keys = {k for keys in dropped.values() for k in keys}
    kept = {k: v for k, v in state_dict.items() if k not in dropped_keys}
    unknown, missing = set(kept) - set(expected), set(expected) - set(kept)
    if unknown or missing:
        parts = [f"{what} keys: {preview(keys)}" for what, keys in (("unknown", unknown), ("missing", missing)) if keys]
        raise ConversionError(f"Checkpoint does not match an {family.description} ({family.architecture}) of the "
                              f"inferred architecture: " + "; ".join(parts) + ".")
    bad = [f"{k} {list(kept[k].shape)} (expected {list(s)})" for k, s in expected.items() if kept[k].shape != s]
    if bad:
        raise ConversionError(f"Checkpoint tensors have unexpected shapes: {preview(bad, 6)}.")
    check_weights(kept)
    for key, source in family.tied:
        if key in kept and not torch.equal(kept[key], kept[source]):
            raise ConversionError(f"`{key}` differs from `{source}`: {family.architecture} ties them, as the official "
                                  "model does.")
    if family.check_extra is not None:
        family.check_extra(state_dict, config, log)
    return config, family.key_map(config).to_ours(kept)


def build_model(config, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype | None = torch.float32):
    """Instantiate the family class of `config.architectures[0]` and load `state_dict` non-strictly.

    dtype: cast the model to this dtype (None: the state dict's floating dtype when it has one, else float32).
    Returns (model in eval mode, missing keys, unexpected keys).
    """
    classes = {f.architecture: f.model_class for f in FAMILIES}
    arch = (config.architectures or [None])[0]
    if arch not in classes:
        raise ConversionError(f"`config.architectures` must name one of {sorted(classes)}, got {arch!r}.")
    model = classes[arch](config)
    result = model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()},
                                   strict=False)
    if dtype is None:
        dtypes = {v.dtype for v in state_dict.values() if v.is_floating_point()}
        dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    model.to(dtype)
    return model.eval(), list(result.missing_keys), list(result.unexpected_keys)


def to_official_state_dict(model) -> dict[str, torch.Tensor]:
    """Our model -> a state dict in the official layout of its family (the inverse of `convert_state_dict`).

    Classifiers also get `pos_embed` when their layout is not the reference one (as the official fine-tuning code
    saves it). Tensors keep the model's dtype. Raises ConversionError for a model the official code cannot express.
    """
    family = family_of_model(model)
    if family.check_exportable is not None:
        family.check_exportable(model)
    ours = model.state_dict()
    keymap = family.key_map(model.config)
    official = keymap.to_official(ours)
    lost = sorted(set(ours) - set(keymap.to_ours(official)))
    if lost:
        raise ConversionError(f"The official {family.description} layout has no place for: {preview(lost)}.")
    if family.extra_official is not None:
        official.update(family.extra_official(model))
    return {k: v.detach().clone().contiguous() for k, v in official.items()}


def _check_output(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())) and not overwrite:
        raise ConversionError(f"`--output_dir` {str(output_dir)!r} exists and is not empty; pass `--overwrite`.")


def _write_directory(output_dir: Path, overwrite: bool, write: Callable[[Path], None]) -> Path:
    """Write into a hidden staging folder, then publish it as `output_dir` (processors.fileio)."""
    _check_output(output_dir, overwrite)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(output_dir)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        write(staging)
        publish_directory(staging, output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return output_dir


def _output_for(output_dir: str | os.PathLike, overwrite: bool, dtype: str) -> Path:
    """The checks both commands make before reading anything: `--dtype` and a free (or `--overwrite`) output."""
    if dtype not in _DTYPES:
        raise ConversionError(f"`--dtype` must be one of {_DTYPES}, got {dtype!r}.")
    _check_output(Path(output_dir), overwrite)
    return Path(output_dir)


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    dtype: str = "float32",
    model_key: str = "auto",
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    tokenizer: str | os.PathLike | None = None,
    **flags,
) -> Path:
    """Official `.pth` -> a transformers directory, written atomically: `config.json` + `model.safetensors`, the
    model's code (`trust_remote_code`), the processor that fits it and a model card (`publishing.complete_model_folder`).

    flags: the settings of `convert_state_dict`. tokenizer: a BERT tokenizer (folder or Hub name; the official
    Stage-2 models use bert-base-uncased) for a video-text model's `UMTProcessor`; without it such a folder gets the
    video processor only (said in the log). Nothing is written when the checkpoint is not understood
    (ConversionError). Returns the output directory.
    """
    output_dir = _output_for(output_dir, overwrite, dtype)
    text_tokenizer = None
    if tokenizer is not None:
        try:
            text_tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        except (OSError, ValueError) as err:
            raise ConversionError(f"`--tokenizer` {str(tokenizer)!r} could not be loaded: {err}") from err
    official, saved = load_official_checkpoint(checkpoint, model_key)
    config, ours = convert_state_dict(official, saved_config=saved, log=log, **flags)
    _check_tokenizer(config, text_tokenizer, tokenizer, log)
    model, missing, unexpected = build_model(config, ours, dtype=torch.float32 if dtype == "float32" else None)
    log(f"missing keys: {missing if missing else 'none'}")
    log(f"unexpected keys: {unexpected if unexpected else 'none'}")
    if missing or unexpected:
        raise ConversionError(f"Converted weights do not fit {type(model).__name__}: missing {missing}, "
                              f"unexpected {unexpected}.")
    log(f"{type(model).__name__}: {sum(p.numel() for p in model.parameters()):,} parameters, dtype {model.dtype}")
    origin = f"Converted with `modeling_umt.convert_original_checkpoint` from the official checkpoint " \
             f"`{Path(checkpoint).name}` (weights unchanged; not re-evaluated here)."

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        complete_model_folder(tmp, model, text_tokenizer, origin=origin)

    _write_directory(output_dir, overwrite, write)
    log(f"saved to {output_dir} (with its processor and model card)")
    return output_dir


def _check_tokenizer(config, tokenizer, name, log: Callable[[str], None]) -> None:
    """A tokenizer only fits a video-text model, and its vocabulary must be the model's."""
    text_config = getattr(config, "text_config", None)
    if text_config is None:
        if tokenizer is not None:
            raise ConversionError(f"`--tokenizer` applies to video-text (Stage-2) checkpoints; this is an "
                                  f"{config.architectures[0]}.")
        return
    if tokenizer is None:
        log("tokenizer: none given (--tokenizer), so the folder gets the video processor only, not UMTProcessor")
    elif len(tokenizer) != text_config.vocab_size:
        raise ConversionError(f"`--tokenizer` {str(name)!r} has {len(tokenizer)} tokens but the checkpoint's BERT "
                              f"has a vocabulary of {text_config.vocab_size}.")


def reverse_checkpoint(
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    dtype: str = "float32",
    model_key: str = "auto",
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """A saved transformers directory -> `output_dir/model.pth`, the official-layout state dict of its family.

    model_key "model" or "module" wraps the state dict under that key; "auto" writes it bare (what every official
    loader accepts). Our config is stored beside the weights as a JSON string under `SAVED_CONFIG_KEY` (ignored by
    the official loaders), so that converting the file again gives back exactly this model without any flag.
    """
    output_dir = _output_for(output_dir, overwrite, dtype)
    if model_key not in ("auto", "model", "module"):
        raise ConversionError(f"`--model_key` for --reverse must be 'auto', 'model' or 'module', got {model_key!r}.")
    if not (Path(model_dir) / "config.json").is_file():
        raise ConversionError(
            f"`--checkpoint` {str(model_dir)!r} is not a saved transformers directory (no config.json)."
        )
    arch = (AutoConfig.from_pretrained(model_dir).architectures or [None])[0]
    classes = {f.architecture: f.model_class for f in FAMILIES}
    if arch not in classes:
        raise ConversionError(f"Saved model architecture must be one of {sorted(classes)}, got {arch!r}.")
    model = classes[arch].from_pretrained(model_dir, dtype=torch.float32 if dtype == "float32" else "auto")
    state = to_official_state_dict(model)
    obj = dict(state) if model_key == "auto" else {model_key: state}
    obj[SAVED_CONFIG_KEY] = json.dumps(_config_to_store(model.config.to_dict()))
    _write_directory(output_dir, overwrite, lambda tmp: torch.save(obj, tmp / "model.pth"))
    log(f"{arch} -> official {family_of_model(model).name} layout ({len(state)} tensors, our config under "
        f"`{SAVED_CONFIG_KEY}`) saved to {output_dir / 'model.pth'}")
    return output_dir / "model.pth"
