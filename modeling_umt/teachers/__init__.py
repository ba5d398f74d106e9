"""Frozen image teachers of UMT, as plug-ins.

- `base.py`: `ImageTeacher`, what every teacher is (targets after the teacher's output norm and projection, the
  last block's class-token attention over the patches, `num_prefix_tokens`), and its output `UMTTeacherOutput`.
- `clip.py`: `UMTTeacher`, the official teacher on a fast CLIP tower (open_clip, OpenAI, official and transformers
  CLIP weights).
- `transformers_teacher.py`: `TransformersTeacher`, any supported transformers vision tower (CLIP, SigLIP, DINOv2,
  DINOv2 with registers).
- `frame_text.py`: `FrameTextTeacher`, a small CLIP-style image-text teacher trained on video frames and their
  captions (the main job's teacher where no CLIP weights can be had); its tower saves as a CLIP folder.
- `registry.py`: `build_teacher(name, ...)`, the names `--teacher` accepts, and `register_teacher` to add one.

A new teacher is a subclass of `ImageTeacher` that implements `forward_frames`, registered with `register_teacher`.
"""

from .base import ImageTeacher, UMTTeacherOutput
from .clip import TEACHER_PRESETS, CLIPVisionTower, UMTTeacher, resize_positional_embedding
from .frame_text import FrameTextTeacher, appearance_caption, encode_sentences
from .registry import build_teacher, register_teacher, registered_teachers
from .transformers_teacher import TransformersTeacher

__all__ = [
    "ImageTeacher",
    "UMTTeacherOutput",
    "UMTTeacher",
    "CLIPVisionTower",
    "TEACHER_PRESETS",
    "resize_positional_embedding",
    "TransformersTeacher",
    "FrameTextTeacher",
    "appearance_caption",
    "encode_sentences",
    "build_teacher",
    "register_teacher",
    "registered_teachers",
]
