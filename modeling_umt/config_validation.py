"""Field validation for every UMT config, in one place: types, ranges and finiteness, each error naming the field, the
value received and what was expected.

`@strict` (huggingface_hub) cannot check the annotations of a module that uses `from __future__ import annotations`,
and it checks no range. `check_config_fields(config, ranges)` does both, from the class's own annotations:

- `bool` fields take only True / False (not "yes", not 1);
- `int` fields take ints but not bools (not "32", not 32.0);
- `float` fields take ints or floats (not bools, not "x"), and must be finite (not NaN, not inf);
- `str` fields take strings; `dict` / config fields their own types; `X | None` also takes None;
- `ranges[name]` is a `Range` (bounds) checked on a number (or on each int of a pair such as `image_size`).

A config adopts it with one line at the top of its `validate_architecture` (its other checks then see well-typed
values):

    def validate_architecture(self):
        check_config_fields(self, MY_RANGES)
        ...

Fields inherited from `transformers.PreTrainedConfig` are left to transformers. `warn_unknown_keys` and
`check_model_type` serve `from_pretrained` (see `ValidatedConfigMixin`).
"""

from __future__ import annotations

import inspect
import logging
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass

from transformers import PreTrainedConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric field: `low` / `high` (None: unbounded), each inclusive unless `*_open`."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True


POSITIVE = Range(low=1)  # a size or count of at least 1
NON_NEGATIVE = Range(low=0)
PROBABILITY = Range(low=0, high=1, high_open=True)  # a dropout rate: [0, 1)
POSITIVE_REAL = Range(low=0, low_open=True)  # an epsilon, a std


def _own_annotations(cls: type) -> dict[str, object]:
    """Field name -> type of the fields declared by `cls` and its non-transformers bases (resolved when strings)."""
    out: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass.__module__.startswith(("transformers.", "huggingface_hub.")):
            continue
        raw = inspect.get_annotations(klass)
        if not raw:
            continue
        module = inspect.getmodule(klass)
        namespace = {**vars(typing), **(vars(module) if module else {}), klass.__name__: klass}
        for name, annotation in raw.items():
            if name.startswith("_") or typing.get_origin(annotation) is typing.ClassVar:
                continue
            if isinstance(annotation, str):
                if annotation.startswith(("ClassVar", "typing.ClassVar")):
                    continue
                annotation = eval(annotation, namespace)  # noqa: S307 (our own annotations, e.g. "int | None")
            out[name] = annotation
    return out


def _options(annotation) -> tuple:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(a for option in typing.get_args(annotation) for a in _options(option))
    return (annotation,)


def _matches(value, annotation) -> bool:
    origin = typing.get_origin(annotation) or annotation
    if annotation is type(None) or annotation is None:
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(any(_matches(v, a) for a in args) for v in value)
    if isinstance(origin, type):
        return isinstance(value, origin)
    return True  # an annotation this helper does not model is left alone


def _type_name(annotation) -> str:
    if annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin is not None:
        return str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", str(annotation))


def _numbers(value) -> list:
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return []


def check_config_fields(config, ranges: Mapping[str, Range] | None = None) -> None:
    """Raise a ValueError (TypeError for a wrong type) naming the first field of `config` whose value has the wrong
    type, is not finite, or lies outside `ranges[field]`. See the module docstring."""
    ranges = ranges or {}
    owner = type(config).__name__
    for name, annotation in _own_annotations(type(config)).items():
        if not hasattr(config, name):
            continue
        value = getattr(config, name)
        options = _options(annotation)
        if not any(_matches(value, option) for option in options):
            expected = " or ".join(_type_name(o) for o in options)
            raise TypeError(f"{owner}: `{name}` must be {expected}, got {value!r} ({type(value).__name__}).")
        for number in _numbers(value):
            if isinstance(number, float) and not math.isfinite(number):
                raise ValueError(f"{owner}: `{name}` must be a finite number, got {value!r}.")
            if name in ranges and not ranges[name].contains(number):
                raise ValueError(f"{owner}: `{name}` must be {ranges[name].describe()}, got {value!r}.")
    unknown = set(ranges) - set(_own_annotations(type(config)))
    if unknown:
        raise KeyError(f"{owner}: ranges given for fields it does not have: {sorted(unknown)}.")


def warn_unknown_keys(cls: type, config_dict: Mapping, source: str) -> list[str]:
    """Log a warning naming the keys of a saved `config_dict` that neither `cls` nor `PreTrainedConfig` knows
    (a typo, or a field of another model); returns them."""
    known = set(_own_annotations(cls)) | set(getattr(PreTrainedConfig, "__dataclass_fields__", {}))
    known |= set(inspect.signature(PreTrainedConfig.__init__).parameters) | _SERIALIZED_KEYS
    known |= set(getattr(cls, "attribute_map", {}))
    unknown = sorted(k for k in config_dict if k not in known)
    if unknown:
        logger.warning("%s: unknown keys in %s, ignored by %s: %s", cls.__name__, source, cls.__name__, unknown)
    return unknown


# Keys transformers writes into every config.json beside the dataclass fields.
_SERIALIZED_KEYS = {"model_type", "transformers_version", "architectures", "auto_map", "_name_or_path",
                    "_commit_hash", "_attn_implementation_autoset", "dtype", "torch_dtype", "id2label", "label2id",
                    "num_labels", "use_cache", "output_attentions", "output_hidden_states", "return_dict",
                    "problem_type", "tokenizer_class", "chunk_size_feed_forward", "is_encoder_decoder",
                    "base_model_tp_plan", "base_model_pp_plan"}


def _family_model_types(cls: type) -> set[str]:
    """`cls.model_type` and those of its config bases and subclasses (a detection config built on `UMTConfig` reads
    a Stage-1 "umt" folder, and the reverse)."""
    related = [k for k in cls.__mro__ if isinstance(k, type) and issubclass(k, PreTrainedConfig)]
    stack = list(cls.__subclasses__())
    while stack:
        sub = stack.pop()
        related.append(sub)
        stack.extend(sub.__subclasses__())
    return {k.model_type for k in related if getattr(k, "model_type", "")}


def check_model_type(cls: type, config_dict: Mapping, source: str) -> None:
    """Raise when a saved config's `model_type` is another model's (a VideoMAE config.json loaded as UMT)."""
    saved = config_dict.get("model_type")
    family = _family_model_types(cls)
    nested = any(isinstance(v, Mapping) and v.get("model_type") == cls.model_type for v in config_dict.values())
    if saved is not None and saved not in family and not nested:  # a sub-config inside a composite one is fine
        raise ValueError(
            f"{source} is a config of model_type {saved!r}, but {cls.__name__} reads model_type "
            f"{cls.model_type!r}; load it with the class made for {saved!r} (e.g. AutoConfig.from_pretrained)."
        )


def check_labels(owner: str, id2label, num_labels) -> None:
    """The label fields given to a config's constructor: `num_labels` an int >= 0; `id2label` the class ids 0..K-1
    without gaps (keys may be their strings, as in a saved config.json); both given: `num_labels == len(id2label)`
    (transformers would only warn and replace the given names by LABEL_0...)."""
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int)):
        raise TypeError(f"{owner}: `num_labels` must be int, got {num_labels!r} ({type(num_labels).__name__}).")
    if num_labels is not None and num_labels < 0:
        raise ValueError(f"{owner}: `num_labels` must be >= 0, got {num_labels!r}.")
    if id2label is None:
        return
    if not isinstance(id2label, Mapping):
        raise TypeError(f"{owner}: `id2label` must be a dict of class id -> name, got {id2label!r}.")
    ids = []
    for key in id2label:
        try:
            ids.append(int(key))
        except (TypeError, ValueError):
            raise ValueError(f"{owner}: `id2label` keys must be class ids (0, 1, ...), got the key {key!r}.") from None
    if sorted(ids) != list(range(len(ids))):
        raise ValueError(f"{owner}: `id2label` keys must be the class ids 0..{len(ids) - 1} without gaps or repeats, "
                         f"got {sorted(ids)[:10]}{'...' if len(ids) > 10 else ''}.")
    if num_labels is not None and num_labels != len(ids):
        raise ValueError(f"{owner}: `num_labels` ({num_labels}) does not match `id2label`, which names {len(ids)} "
                         f"classes; give one of them, or both alike.")


_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")


class ValidatedConfigMixin:
    """Adds to a config class: at construction, `num_labels` and `id2label` are checked (`check_labels`); at
    `from_pretrained`, a saved `model_type` of another model fails, and unknown keys of the saved config.json warn.
    Put it first among the bases: `class MyConfig(ValidatedConfigMixin, PreTrainedConfig)`.

    `from_pretrained(..., num_labels=N)` (or `from_dict`) with N unlike the saved classes stays transformers' way to
    give a loaded model a new head: the saved names are replaced by LABEL_0..LABEL_{N-1}, with a warning.
    """

    def __post_init__(self, **kwargs):
        check_labels(type(self).__name__, self.id2label, kwargs.get("num_labels"))
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        num_labels = kwargs.pop("num_labels", None)
        saved = config_dict.get("id2label")
        if num_labels is not None and saved is not None and num_labels != len(saved):
            logger.warning("%s: num_labels=%r replaces the %d saved classes (%s...) by generic names LABEL_<i>",
                           cls.__name__, num_labels, len(saved), list(saved.values())[:3])
            config_dict = {k: v for k, v in config_dict.items() if k not in ("id2label", "label2id")}
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        hub = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
        config_dict, _ = cls.get_config_dict(pretrained_model_name_or_path, **hub)
        source = f"config {pretrained_model_name_or_path!s}"
        check_model_type(cls, config_dict, source)
        if config_dict.get("model_type") in {None} | _family_model_types(cls):  # not a sub-config of a composite one
            warn_unknown_keys(cls, config_dict, source)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)


__all__ = [
    "NON_NEGATIVE", "POSITIVE", "POSITIVE_REAL", "PROBABILITY", "Range", "ValidatedConfigMixin", "check_config_fields",
    "check_labels", "check_model_type", "warn_unknown_keys",
]
