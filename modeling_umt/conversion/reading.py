"""Reading official checkpoint files (once, through the restricted unpickler) and label files."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from processors.labels import read_label_file

from . import safe_pickle
from .base import ConversionError, preview

__all__ = ["SAVED_CONFIG_KEY", "load_official_checkpoint", "unwrap_state_dict", "check_weights", "id2label_from_file"]

# Where `--reverse` stores our config (a JSON string) in the official checkpoint: a top-level entry that the official
# loaders ignore (they read `checkpoint["model"]`, or load the bare dict with strict=False), so that converting the
# export again rebuilds exactly the model it came from.
SAVED_CONFIG_KEY = "umt_transformers_config"


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
    obj = {k: v for k, v in obj.items() if k != SAVED_CONFIG_KEY}
    candidates = ["model", "module"] if model_key == "auto" else model_key.split("|")
    if any(name not in ("model", "module") for name in candidates):
        raise ConversionError(f"`model_key` must be 'model', 'module', 'model|module' or 'auto', got {model_key!r}.")
    state = next((obj[name] for name in candidates if isinstance(obj.get(name), Mapping)), None)
    if state is None:
        if model_key != "auto" and not _is_state_dict(obj):
            raise ConversionError(
                f"`model_key={model_key!r}` but the checkpoint has no such entry; its top-level keys are: "
                f"{preview(map(str, obj.keys()))}."
            )
        state = obj
    if not _is_state_dict(state):
        bad = [str(k) for k, v in state.items() if not torch.is_tensor(v)]
        raise ConversionError(
            f"Could not find a state dict in the checkpoint: entries that are not tensors: {preview(bad)}. "
            f"Pass `--model_key model` or `--model_key module` if the weights are stored under that key."
        )
    state = {str(k): v for k, v in state.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_official_checkpoint(
    path: str | os.PathLike, model_key: str = "auto"
) -> tuple[dict[str, torch.Tensor], dict | None]:
    """Read an official `.pth` once and return (state dict, the config a `--reverse` export stored, or None).

    The file is unpickled by `safe_pickle` (tensors, containers, argparse.Namespace, EasyDict, numpy values only):
    official training checkpoints load with their `args` / `config` entries, and a file naming any other class is
    refused before any of its code runs (ConversionError naming the class).
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"`--checkpoint` {str(path)!r} is not a file.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=safe_pickle)
    except safe_pickle.UnsafeCheckpointError as err:
        raise ConversionError(f"{str(path)!r}: {err}. Re-save the state dict alone from a trusted copy.") from err
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise ConversionError(f"Could not read {str(path)!r} as a PyTorch checkpoint: {err}.") from err
    obj = safe_pickle.plain_containers(obj)
    saved = obj.get(SAVED_CONFIG_KEY) if isinstance(obj, Mapping) else None
    if saved is not None:
        try:
            saved = json.loads(saved)
        except (TypeError, json.JSONDecodeError) as err:
            raise ConversionError(f"{str(path)!r}: `{SAVED_CONFIG_KEY}` is not a JSON config: {err}.") from err
    return unwrap_state_dict(obj, model_key), saved


def check_weights(state_dict: Mapping[str, torch.Tensor]) -> None:
    """Refuse integer / bool tensors and non-finite values, naming the first offending key."""
    for key in sorted(state_dict):
        value = state_dict[key]
        if not value.is_floating_point():
            raise ConversionError(f"`{key}` has dtype {value.dtype}; a weight must be a floating-point tensor.")
        if not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise ConversionError(f"`{key}` holds {bad} non-finite values (nan or inf); the checkpoint is corrupt.")


def id2label_from_file(path: str | os.PathLike, num_labels: int) -> dict[int, str]:
    """id2label from `--label_file` (any layout `processors.labels.read_label_file` reads), with exactly
    `num_labels` classes; ConversionError naming the file otherwise."""
    try:
        names = read_label_file(path, num_labels)
    except ValueError as err:
        raise ConversionError(f"`--label_file`: {err}.") from err
    return dict(enumerate(names))
