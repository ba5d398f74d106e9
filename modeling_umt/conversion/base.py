"""The pieces every conversion family shares: the error type, the settings log, and the family record."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch

__all__ = [
    "ConversionError", "Family", "Settings", "preview", "pick_heads", "RELEASED_VIT_HEADS", "RELEASED_BERT_HEADS",
]

_MISSING = object()

# Attention heads are not visible in the weights. They are inferred only for the released (width, depth) pairs:
# UMT-B/16 and UMT-L/16 for the video ViT, bert-base and bert-large for the text encoder. Any other shape needs the
# flag (or a config stored by --reverse): width // 64 would be a guess (a tiny width-64 model has 4 heads, not 1).
RELEASED_VIT_HEADS = {(768, 12): 12, (1024, 24): 16}
RELEASED_BERT_HEADS = {(768, 12): 12, (1024, 24): 16}


class ConversionError(ValueError):
    """A checkpoint or argument the converter does not understand; the message names the offending keys/values."""


def preview(keys: Iterable[str], limit: int = 12) -> str:
    """`keys` sorted and joined, cut after `limit` with the number left out."""
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def block_count(state_dict: Mapping[str, torch.Tensor], prefix: str, what: str) -> int:
    """Number of `prefix{i}.` groups; raises when the indices are not 0..n-1."""
    found = {int(m.group(1)) for k in state_dict if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if found and found != set(range(max(found) + 1)):
        raise ConversionError(f"{what} indices under `{prefix}` are not contiguous: found {sorted(found)}.")
    return len(found)


def majority_dim(state_dict: Mapping[str, torch.Tensor], carriers: Iterable[tuple[str, int]], what: str) -> int:
    """A size every carrier `(key, dim)` should share, by majority, so that one corrupted tensor is the one named by
    the shape check instead of everything that disagrees with it."""
    votes = Counter(int(state_dict[k].shape[d]) for k, d in carriers if k in state_dict and state_dict[k].ndim > d)
    if not votes:
        raise ConversionError(f"The checkpoint holds no tensor that gives the {what}.")
    return votes.most_common(1)[0][0]


class Settings:
    """Resolves every setting of the converted config and prints where each value came from.

    Order: the flag (`--name`), then the weights, then the config a `--reverse` export stored in the checkpoint,
    then a documented default; a setting with none of these raises, asking for its flag. A flag that contradicts
    the weights is an error.
    """

    def __init__(self, flags: Mapping[str, object], saved: Mapping | None, log: Callable[[str], None]):
        self.flags = {k: v for k, v in flags.items() if v is not None}
        self.saved = saved
        self.log = log

    def saved_value(self, *path: str):
        """The value at `path` in the stored config, or None."""
        node = self.saved
        for name in path:
            if not isinstance(node, Mapping) or name not in node:
                return None
            node = node[name]
        return node

    def pick(self, name: str, *, weights=_MISSING, saved=None, default=_MISSING, why: str = "", required: str = ""):
        """Value of setting `name` (see the class docstring). `why` explains the default; `required` is the reason
        given when nothing decides it."""
        flag = self.flags.get(name, _MISSING)
        if flag is not _MISSING:
            if weights is not _MISSING and flag != weights:
                raise ConversionError(
                    f"`--{name} {flag}` contradicts the checkpoint's weights, which give {weights!r}."
                )
            value, source = flag, "flag"
        elif weights is not _MISSING:
            value, source = weights, "from the weights"
        elif saved is not None:
            value, source = saved, "from the config stored by --reverse"
        elif default is not _MISSING:
            value, source = default, f"default: {why}; set --{name} to change it"
        else:
            raise ConversionError(f"Cannot infer `{name}`: {required}. Pass `--{name}`.")
        self.log(f"  {name} = {value!r} ({source})")
        return value


@dataclass(frozen=True)
class Family:
    """One kind of official checkpoint and how it maps to one of our classes (see the package docstring).

    name / description: how the family is printed. architecture: our class name (`config.architectures[0]`);
    config_class / model_class: our classes.
    matches(keys): whether a key set belongs to this family (exactly one family may match).
    key_pattern: a regex every official key of the family matches (others are named as unknown).
    dropped: (regex, why) pairs of official keys that are read but not converted.
    infer_config(state_dict, settings): keyword arguments of our config, every setting that the weights do not
        give resolved through `settings` (a config stored by --reverse supplies every field not returned here).
    key_map(config): the `KeyMap` between the two layouts for this config.
    check_extra(state_dict, config, log): verifies the official keys that are not weights (e.g. `pos_embed`).
    extra_official(model): those keys as the official code saves them (for `--reverse`).
    check_exportable(model): raises when the official code cannot express `model`.
    owns(model): whether `to_official_state_dict` should use this family for `model` (default: an instance of
        `model_class`).
    tied: (key, source) pairs of official keys that must be equal because our model ties them.
    flags: the settings (command-line flags) that apply to this family; others are refused.
    """

    name: str
    description: str
    architecture: str
    config_class: type
    model_class: type
    matches: Callable[[set[str]], bool]
    key_pattern: re.Pattern
    infer_config: Callable
    key_map: Callable
    owns: Callable | None = None
    dropped: tuple[tuple[str, str], ...] = ()
    check_extra: Callable | None = None
    extra_official: Callable | None = None
    check_exportable: Callable | None = None
    tied: tuple[tuple[str, str], ...] = ()
    flags: tuple[str, ...] = ("model_size", "num_frames", "image_size", "num_attention_heads")

    def exports(self, model) -> bool:
        """Whether `model` is written back in this family's official layout."""
        return self.owns(model) if self.owns is not None else isinstance(model, self.model_class)

    def dropped_keys(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """{why: keys} of the official keys this family reads but does not convert."""
        out: dict[str, list[str]] = {}
        for key in keys:
            for pattern, why in self.dropped:
                if re.fullmatch(pattern, key):
                    out.setdefault(why, []).append(key)
                    break
        return out


def pick_heads(settings: "Settings", name: str, width: int, depth: int, released: Mapping, saved, what: str) -> int:
    """The `name` head count: flag, else the stored config, else the released size's (rule above), else an error."""
    heads = settings.pick(
        name, saved=saved, default=released.get((width, depth), _MISSING),
        why=f"the released {what} of width {width} x {depth} layers",
        required=f"the {what} heads are not stored in the weights, and width {width} x {depth} layers is no released "
        f"size ({', '.join(f'{w} x {d} -> {h}' for (w, d), h in released.items())})",
    )
    if not isinstance(heads, int) or heads < 1 or width % heads:
        raise ConversionError(f"`--{name}` must be a positive divisor of the {what} width {width}, got {heads!r}.")
    return heads
