"""Teachers by name: `build_teacher` (what `--teacher` names) and `register_teacher` (add your own).

A name is either exact ("clip_b16") or a prefix ending in ':' ("hf:") followed by a source ("hf:facebook/dinov2-
with-registers-small"). A factory is called as

    factory(source, pretrained=..., image_size=..., patch_size=..., num_return_layers=..., autocast_dtype=...,
            **other ImageTeacher options) -> ImageTeacher

where `source` is the name itself for an exact entry and the text after the prefix for a prefix entry, and
`image_size` / `patch_size` describe the STUDENT's frames: its token grid per frame is (image_size // patch_size)^2.

The grid rule. A teacher's patch grid must equal the student's token grid per frame (the trainers pair token i of
the student with token i of the teacher). Teachers built from a tower of free resolution follow the student: "hf:",
"transformers:" and the tiny random ones run at (image_size // patch_size) x their own patch size, the tower
interpolating its positions (e.g. DINOv2 /14 behind a 224 px /16 student runs at 196 px, like the official CLIP-L/14
teacher). The official presets and open_clip names keep their own resolution (clip_b16 224 px, clip_l14 196 px, an
open_clip model its native size), and the training scripts refuse a student whose grid differs.
"""

import logging
from typing import Callable, Dict, List, Optional

import torch
import transformers
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from .base import ImageTeacher
from .clip import TEACHER_PRESETS, CLIPVisionTower, UMTTeacher
from .transformers_teacher import TransformersTeacher

logger = logging.getLogger(__name__)

TeacherFactory = Callable[..., ImageTeacher]
_REGISTRY: Dict[str, TeacherFactory] = {}


def register_teacher(name: str, factory: TeacherFactory, replace: bool = False) -> None:
    """Make `build_teacher(name)` call `factory` (see the module docstring for how it is called).

    A name ending in ':' is a prefix: "myzoo:" serves "myzoo:<anything>". Registering a taken name raises unless
    `replace=True`.
    """
    if not isinstance(name, str) or not name or name == ":":
        raise ValueError(f"name={name!r} must be a non-empty string (a prefix ends in ':')")
    if not callable(factory):
        raise ValueError(f"factory={factory!r} must be callable")
    if name in _REGISTRY and not replace:
        raise ValueError(f"name={name!r} is already registered; pass replace=True to replace it")
    _REGISTRY[name] = factory


def registered_teachers() -> List[str]:
    """The registered names, prefixes (ending in ':') included, sorted."""
    return sorted(_REGISTRY)


def build_teacher(name: str, pretrained: Optional[str] = None, num_return_layers: int = 6,
                  image_size: int = 224, patch_size: int = 16, autocast_dtype: Optional[torch.dtype] = None,
                  **kwargs) -> ImageTeacher:
    """The teacher a training script names with `--teacher` / `--teacher_pretrained`.

    Built-in names:
    - "clip_b16" / "clip_l14": the official teachers (`pretrained`: open_clip tag such as "openai", or a local file);
    - "hf:<dir or hub id>": a transformers vision tower (CLIP, SigLIP, DINOv2, DINOv2 with registers). CLIP runs on
      the fast CLIP tower (`UMTTeacher.from_transformers`), the others through `TransformersTeacher`;
    - "transformers:<dir or hub id>": the same through `TransformersTeacher` for every family, CLIP included;
    - "open_clip:<name>" or a bare open_clip model name (`open_clip.list_models()`): `pretrained` as above;
    - "tiny-random": a small CLIP-shaped tower (width 128, 6 blocks, 4 heads) on the student's token grid, with
      random weights drawn from a fixed seed, so every script (and the figure module) that asks for it gets the same
      teacher. For CPU demos and tests only: nothing to download, nothing learned;
    - "tiny-random-clip", "tiny-random-siglip", "tiny-random-dinov2" (4 registers): the same for the transformers
      families, through `TransformersTeacher`.
    `image_size` / `patch_size` are the student's (see the grid rule in the module docstring). Other kwargs go to the
    teacher (return_interval, normalize). Unknown names raise a ValueError listing the registered ones.
    """
    options = dict(num_return_layers=num_return_layers, autocast_dtype=autocast_dtype, **kwargs)
    if name in _REGISTRY:
        factory, source = _REGISTRY[name], name
    elif ":" in name and name[: name.index(":") + 1] in _REGISTRY:
        prefix = name[: name.index(":") + 1]
        factory, source = _REGISTRY[prefix], name[len(prefix):]
    elif _is_open_clip_name(name):
        factory, source = _open_clip, name
    else:
        raise ValueError(f"teacher={name!r} is not a registered teacher; expected one of {registered_teachers()} "
                         "(a name ending in ':' takes a source after it) or an open_clip model name")
    return factory(source, pretrained=pretrained, image_size=image_size, patch_size=patch_size, **options)


# ----------------------------------------------------------------------------------------------------------
# Built-in factories


def _no_pretrained(source: str, pretrained: Optional[str]) -> None:
    if pretrained is not None:
        raise ValueError(f"pretrained={pretrained!r} does not apply to teacher {source!r}: its weights are named by "
                         "the teacher itself (a directory or hub id) or random")


def _student_grid_size(image_size: int, patch_size: int, teacher_patch_size: int) -> int:
    """The teacher resolution whose patch grid is the student's: (image_size // patch_size) * teacher patch."""
    if image_size % patch_size:
        raise ValueError(f"image_size={image_size} must be a multiple of patch_size={patch_size} (the student's grid)")
    return image_size // patch_size * teacher_patch_size


def _preset(source, pretrained, image_size, patch_size, **options):
    return UMTTeacher.from_preset(source, pretrained=pretrained, **options)


def _open_clip(source, pretrained, image_size, patch_size, **options):
    return UMTTeacher.from_open_clip(source, pretrained=pretrained, **options)


def _is_open_clip_name(name: str) -> bool:
    import open_clip  # heavy; only imported when a name is not registered

    return name in open_clip.list_models()


def _transformers_config(source: str):
    config = transformers.AutoConfig.from_pretrained(source)
    return getattr(config, "vision_config", config)  # a full CLIPModel / SiglipModel keeps the tower's config inside


def _hf(source, pretrained, image_size, patch_size, generic: bool = False, **options):
    _no_pretrained(source, pretrained)
    config = _transformers_config(source)
    size = _student_grid_size(image_size, patch_size, config.patch_size)
    if size != config.image_size:
        logger.info("Teacher %s runs at %d px (trained at %d): a %dx%d patch grid, the student's", source, size,
                    config.image_size, size // config.patch_size, size // config.patch_size)
    if config.model_type == "clip_vision_model" and not generic:
        return UMTTeacher.from_transformers(source, image_size=size, **options)
    return TransformersTeacher.from_pretrained(source, image_size=size, **options)


def _transformers(source, pretrained, image_size, patch_size, **options):
    return _hf(source, pretrained, image_size, patch_size, generic=True, **options)


def _seeded(build: Callable, seed: int = 1234):
    """build() under a fixed seed, without disturbing the caller's random stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _tiny_random(source, pretrained, image_size, patch_size, **options):
    _no_pretrained(source, pretrained)
    tower = _seeded(lambda: CLIPVisionTower(width=128, layers=6, heads=4, patch_size=patch_size,
                                            image_size=image_size, output_dim=128))
    return UMTTeacher(tower, **options)


# Tiny transformers towers of the tiny-random size; the student's patch size and resolution give the grid.
_TINY_TOWERS = {
    "tiny-random-clip": (CLIPVisionConfig, CLIPVisionModel, {}),
    "tiny-random-siglip": (SiglipVisionConfig, SiglipVisionModel, {}),
    "tiny-random-dinov2": (Dinov2WithRegistersConfig, Dinov2WithRegistersModel, {"num_register_tokens": 4}),
}


def _tiny_random_transformers(source, pretrained, image_size, patch_size, **options):
    _no_pretrained(source, pretrained)
    config_class, model_class, extra = _TINY_TOWERS[source]
    config = config_class(hidden_size=128, intermediate_size=512, num_hidden_layers=6, num_attention_heads=4,
                          image_size=image_size, patch_size=patch_size, **extra)
    model = _seeded(lambda: model_class(config))
    return TransformersTeacher(model, **options)


for _name in TEACHER_PRESETS:
    register_teacher(_name, _preset)
register_teacher("hf:", _hf)
register_teacher("transformers:", _transformers)
register_teacher("open_clip:", _open_clip)
register_teacher("tiny-random", _tiny_random)
for _name in _TINY_TOWERS:
    register_teacher(_name, _tiny_random_transformers)
