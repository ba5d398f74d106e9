"""A restricted unpickler for official training checkpoints: only known harmless classes are ever built.

Official checkpoints store their training settings next to the weights: Stage 1 an `argparse.Namespace` (`args`),
Stage 2 an `EasyDict` (`config`, class `utils.easydict.EasyDict` of the official repository). `torch.load`'s
`weights_only=True` refuses both; `weights_only=False` would import and call whatever the file names. This module is
used as torch.load's `pickle_module`: its `Unpickler.find_class` is the only door through which pickle obtains a
class or function, and it opens for the set below alone, so a checkpoint that names anything else is refused at the
moment the name is read, before any of its code can run.

Admitted: torch's tensor/parameter rebuild functions, dtypes, `torch.Size`, `torch.device` (storages are resolved by
torch.load itself), `collections.OrderedDict`, `argparse.Namespace`, `set`/`frozenset`, `_codecs.encode` (how
protocol-2 pickles store bytes), numpy arrays, dtypes and scalars, and `EasyDict` (from `easydict` or the official
`utils.easydict`), which is rebuilt as a stand-in dict subclass and turned into plain dicts by `plain_containers`.
"""

from __future__ import annotations

import _codecs
import argparse
import collections
import pickle

import numpy as np
import torch
import torch._utils

__all__ = ["Unpickler", "load", "plain_containers", "UnsafeCheckpointError"]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint names a class or function outside the admitted set; `qualified_name` is that name."""

    def __init__(self, qualified_name: str):
        self.qualified_name = qualified_name
        super().__init__(
            f"refused to unpickle `{qualified_name}`: only tensors, plain containers, argparse.Namespace, EasyDict and "
            "numpy values are admitted from a checkpoint (nothing of it was run)"
        )


class _EasyDictStandIn(dict):
    """What an official `EasyDict` is rebuilt as: its items; the attribute copy pickle sends as state is ignored
    (EasyDict keeps every attribute as an item too)."""

    def __setstate__(self, state) -> None:
        for key, value in (state or {}).items():
            self.setdefault(key, value)


def _numpy_multiarray():
    return getattr(np, "_core", None) or np.core  # numpy 2 renamed `numpy.core` to `numpy._core`


_ADMITTED: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("argparse", "Namespace"): argparse.Namespace,
    ("easydict", "EasyDict"): _EasyDictStandIn,
    ("utils.easydict", "EasyDict"): _EasyDictStandIn,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,  # protocol-2 pickles keep Python 2 module names
    ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs.encode,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    **{("torch._utils", name): getattr(torch._utils, name) for name in (
        "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state")},
    **{(f"numpy.{core}.multiarray", name): getattr(_numpy_multiarray().multiarray, name)
       for core in ("core", "_core") for name in ("scalar", "_reconstruct")},
}


class Unpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` returns only admitted objects (module docstring); anything else raises
    `UnsafeCheckpointError` naming it."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ADMITTED:
            return _ADMITTED[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise UnsafeCheckpointError(f"{module}.{name}")


def load(file, **kwargs):
    """`pickle.load` through the restricted `Unpickler` (torch.load calls it for the legacy file header)."""
    return Unpickler(file, **kwargs).load()


def plain_containers(obj):
    """`obj` with every EasyDict stand-in replaced by a plain dict, recursively through dicts, lists and tuples."""
    if isinstance(obj, dict):
        items = {key: plain_containers(value) for key, value in obj.items()}
        return items if type(obj) in (dict, _EasyDictStandIn) else type(obj)(items)
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain_containers(value) for value in obj)
    return obj
