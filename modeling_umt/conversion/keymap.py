"""The key map between an official layout and ours, used in both directions, and the map of the UMT ViT.

A `KeyMap` is data: exact renames, fused tensors (the official `attn.qkv.weight` rows are our query, key and value
weights, in that order) and prefix renames (the BERT text encoder). `to_ours` and `to_official` read the same
entries, so the two directions cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .base import ConversionError

__all__ = ["KeyMap", "vit_key_map", "uta_key_map", "norm_key_map"]

# Per-block official suffix -> our suffix, everything that is a plain rename (qkv is fused, see vit_key_map).
_BLOCK_RENAMES = (
    ("norm1", "norm1"),
    ("attn.proj", "attention.proj"),
    ("norm2", "norm2"),
    ("mlp.fc1", "mlp.fc1"),
    ("mlp.fc2", "mlp.fc2"),
)


@dataclass(frozen=True)
class KeyMap:
    """renames: (official key, our key). fused: (official key, our keys) concatenated along dim 0.
    prefixes: (official prefix, our prefix), for every key under the prefix that no exact entry names."""

    renames: tuple[tuple[str, str], ...] = ()
    fused: tuple[tuple[str, tuple[str, ...]], ...] = ()
    prefixes: tuple[tuple[str, str], ...] = ()

    def __add__(self, other: "KeyMap") -> "KeyMap":
        return KeyMap(self.renames + other.renames, self.fused + other.fused, self.prefixes + other.prefixes)

    def _convert(self, state_dict: Mapping[str, torch.Tensor], official_side: bool) -> dict[str, torch.Tensor]:
        src, dst = (0, 1) if official_side else (1, 0)
        out: dict[str, torch.Tensor] = {}
        named: set[str] = set()
        for pair in self.renames:
            named.add(pair[src])
            if pair[src] in state_dict:
                out[pair[dst]] = state_dict[pair[src]]
        for theirs, ours in self.fused:
            if official_side:
                named.add(theirs)
                if theirs in state_dict:
                    whole = state_dict[theirs]
                    if whole.shape[0] % len(ours):
                        raise ConversionError(f"`{theirs}` has {whole.shape[0]} rows, not a multiple of {len(ours)}.")
                    out.update(zip(ours, (part.clone() for part in whole.chunk(len(ours), dim=0))))
            else:
                named.update(ours)
                if all(k in state_dict for k in ours):
                    out[theirs] = torch.cat([state_dict[k] for k in ours], dim=0)
        by_length = sorted(self.prefixes, key=lambda pair: -len(pair[src]))
        for key, value in state_dict.items():
            if key in named:
                continue
            for pair in by_length:
                if key.startswith(pair[src]):
                    out[pair[dst] + key[len(pair[src]) :]] = value
                    break
        return out

    def to_ours(self, official: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official state dict -> ours; keys the map does not name are left out."""
        return self._convert(official, official_side=True)

    def to_official(self, ours: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Our state dict -> the official layout; keys the map does not name are left out."""
        return self._convert(ours, official_side=False)


def norm_key_map(official: str, ours: str) -> KeyMap:
    """A LayerNorm (or Linear) module: `{official}.{weight,bias}` <-> `{ours}.{weight,bias}`."""
    return KeyMap(renames=tuple((f"{official}.{p}", f"{ours}.{p}") for p in ("weight", "bias")))


def vit_key_map(num_layers: int, qkv_bias: bool, official: str, ours: str, final_norm: bool) -> KeyMap:
    """The UMT ViT: official keys under `official` (e.g. "encoder.", "", "vision_encoder.encoder.") <-> ours under
    `ours` (e.g. "umt.", "vision_model.").

        {ours}embeddings.patch_embeddings.projection.*  <-> {official}patch_embed.proj.*
        {ours}encoder.layer.{i}.attention.{query,key,value}.weight <-> rows of {official}blocks.{i}.attn.qkv.weight
        {ours}encoder.layer.{i}.attention.{query,value}.bias <-> {official}blocks.{i}.attn.{q,v}_bias (k has none)
        {ours}encoder.layer.{i}.{norm1,norm2,attention.proj,mlp.fc1,mlp.fc2}.*
                                                   <-> {official}blocks.{i}.{norm1,norm2,attn.proj,mlp.fc1,mlp.fc2}.*
        {ours}layernorm.*                               <-> {official}norm.*   (when final_norm)
    """
    keymap = norm_key_map(f"{official}patch_embed.proj", f"{ours}embeddings.patch_embeddings.projection")
    for i in range(num_layers):
        theirs, mine = f"{official}blocks.{i}.", f"{ours}encoder.layer.{i}."
        for a, b in _BLOCK_RENAMES:
            keymap += norm_key_map(theirs + a, mine + b)
        qkv = tuple(f"{mine}attention.{n}.weight" for n in ("query", "key", "value"))
        keymap += KeyMap(fused=((theirs + "attn.qkv.weight", qkv),))
        if qkv_bias:
            keymap += KeyMap(renames=((theirs + "attn.q_bias", mine + "attention.query.bias"),
                                      (theirs + "attn.v_bias", mine + "attention.value.bias")))
    if final_norm:
        keymap += norm_key_map(f"{official}norm", f"{ours}layernorm")
    return keymap


def uta_key_map(num_heads: int, official: str) -> KeyMap:
    """The UTA heads: `uta_heads.{k}.{dense,norm}.*` <-> `{official}{k}.{head,norm}.*` (official `clip_decoder`)."""
    keymap = KeyMap()
    for k in range(num_heads):
        keymap += norm_key_map(f"{official}{k}.head", f"uta_heads.{k}.dense")
        keymap += norm_key_map(f"{official}{k}.norm", f"uta_heads.{k}.norm")
    return keymap
