# Copyright 2026 The UMT-for-Transformers authors. Licensed under the Apache License, Version 2.0.
"""The image teacher fine-tuned as a video classifier: the baseline of "the student beats its teacher on motion".

UMT distils a CLIP-style image tower into a video student. To compare the two on the same task, the teacher is
fine-tuned the way the student is (run_finetune.py, `UMTFineTuningTrainer`): every frame is encoded alone by the tower,
its projected image embedding (`image_embeds`, the teacher's own feature: class token -> `post_layernorm` ->
`visual_projection`) is averaged over the frames, then a LayerNorm (`fc_norm`) and a linear head, initialised as
UMT's (truncated normal x `head_init_scale`). Frame order cannot matter, so the classes that differ only by it (the
time-reversed synthetic classes) are beyond it by construction.

The config is a `CLIPVisionConfig` (the tower's own, saved by `CLIPVisionModelWithProjection.save_pretrained`) with
the classifier's fields added: `num_labels` / `id2label` / `label2id`, `num_frames` (the clip length the folder's
video processor samples), `classifier_dropout` and `head_init_scale`. The tower's weights keep their names
(`vision_model.*`, `visual_projection.weight`), so `from_teacher` loads a saved teacher folder as is.

Shapes: B clips, T frames, C channels, S x S pixels (S = the tower's `image_size`), D tower width, P projection
width, K classes.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig
from transformers import initialization as init
from transformers.modeling_outputs import ImageClassifierOutput
from transformers.models.clip.modeling_clip import CLIPPreTrainedModel, CLIPVisionModel
from transformers.utils import logging

from .inputs import check_pixel_values

logger = logging.get_logger(__name__)

# The classifier's fields on top of the tower's CLIPVisionConfig, with their defaults (UMT's fine-tuning head).
CLASSIFIER_DEFAULTS = {"classifier_dropout": 0.0, "head_init_scale": 0.001}
TOWER_ARCHITECTURE = "CLIPVisionModelWithProjection"


class TeacherClassificationHead(nn.Linear):
    """The classification Linear; its own class so its init (truncated normal x `head_init_scale`) is found by type."""


class TeacherFrameLevelClassifier(CLIPPreTrainedModel):
    """A CLIP-style image tower as a frame-level video classifier (see the module docstring).

    Input `pixel_values` (B, T, C, S, S), normalised as the tower was trained (the project's frames: ImageNet
    mean / std, as the tower saw them as a Stage-1 teacher). Returns `ImageClassifierOutput` with logits (B, K) and,
    given `labels` (B,) class ids, the cross-entropy loss (float32).
    """

    config: CLIPVisionConfig
    config_class = CLIPVisionConfig
    base_model_prefix = "vision_model"
    main_input_name = "pixel_values"
    input_modalities = "video"
    _no_split_modules = ["CLIPEncoderLayer", "CLIPVisionEmbeddings"]

    def __init__(self, config: CLIPVisionConfig):
        super().__init__(config)
        for name, default in CLASSIFIER_DEFAULTS.items():
            if not hasattr(config, name):
                setattr(config, name, default)
        if config.num_labels < 1:
            raise ValueError(f"`config.num_labels` must be >= 1 for a classifier, got {config.num_labels}.")
        self.num_labels = config.num_labels
        # The tower, named as in CLIPVisionModelWithProjection so that its saved weights load unchanged.
        self.vision_model = CLIPVisionModel._from_config(config)
        self.visual_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)
        self.fc_norm = nn.LayerNorm(config.projection_dim, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = TeacherClassificationHead(config.projection_dim, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # CLIP's rules for the tower; LayerNorms to identity
        if isinstance(module, TeacherClassificationHead):
            weight = torch.empty_like(module.weight, device="cpu" if module.weight.is_meta else module.weight.device)
            nn.init.trunc_normal_(weight, std=self.config.initializer_range)
            init.copy_(module.weight, weight * self.config.head_init_scale)
            init.zeros_(module.bias)
        elif isinstance(module, TeacherFrameLevelClassifier):  # CLIP's rule for the projection of a tower alone
            std = self.config.hidden_size**-0.5 * self.config.initializer_factor
            init.normal_(module.visual_projection.weight, std=std)

    def get_input_embeddings(self) -> nn.Module:
        return self.vision_model.embeddings.patch_embedding

    def no_weight_decay(self) -> set[str]:
        """The position table is excluded from weight decay as UMT's (the class embedding is 1-D: already none)."""
        return {"position_embedding.weight"}

    def frame_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, T, C, S, S) -> (B, T, P): each frame's `image_embeds`, encoded alone by the tower."""
        check_pixel_values(pixel_values)
        size, channels = self.config.image_size, self.config.num_channels
        if pixel_values.ndim != 5 or tuple(pixel_values.shape[2:]) != (channels, size, size):
            raise ValueError(
                f"`pixel_values` must be (batch, frames, {channels}, {size}, {size}) for this tower (image_size "
                f"{size}), got a tensor of shape {tuple(pixel_values.shape)}."
            )
        b, t = pixel_values.shape[:2]
        pooled = self.vision_model(pixel_values=pixel_values.flatten(0, 1)).pooler_output  # (B*T, D)
        return self.visual_projection(pooled).view(b, t, -1)

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs
    ) -> ImageClassifierOutput:
        """pixel_values (B, T, C, S, S) -> logits (B, K); with labels (B,), the cross-entropy loss."""
        features = self.fc_norm(self.frame_features(pixel_values).mean(1))  # (B, P)
        logits = self.classifier(self.dropout(features))
        loss = None if labels is None else F.cross_entropy(logits.float(), labels)
        return ImageClassifierOutput(loss=loss, logits=logits)

    @classmethod
    def from_teacher(
        cls,
        teacher_dir: str | os.PathLike,
        id2label: dict[int, str],
        num_frames: int,
        image_size: int | None = None,
        classifier_dropout: float = CLASSIFIER_DEFAULTS["classifier_dropout"],
        head_init_scale: float = CLASSIFIER_DEFAULTS["head_init_scale"],
        **kwargs,
    ) -> "TeacherFrameLevelClassifier":
        """A classifier over the tower saved in `teacher_dir` (`CLIPVisionModelWithProjection.save_pretrained`): the
        tower and its projection load from the folder, `fc_norm` and the head (len(id2label) classes) are new.

        image_size: when given, it must be the tower's (its position table is fixed): a clear error otherwise.
        kwargs: `from_pretrained` options (e.g. `attn_implementation`, `dtype`).
        """
        config = CLIPVisionConfig.from_pretrained(teacher_dir)
        architectures = list(getattr(config, "architectures", None) or [])
        if TOWER_ARCHITECTURE not in architectures:
            raise ValueError(
                f"`teacher_dir` {str(teacher_dir)!r} holds {architectures or 'no architectures'}; expected a "
                f"{TOWER_ARCHITECTURE} folder (a tower with its image projection, saved with save_pretrained)."
            )
        if image_size is not None and image_size != config.image_size:
            raise ValueError(
                f"`image_size` {image_size} differs from the teacher's image_size {config.image_size} "
                f"({teacher_dir}): its position table is fixed, pass --image_size {config.image_size}."
            )
        if not id2label:
            raise ValueError(f"`id2label` must name at least one class, got {id2label!r}.")
        config.num_labels = len(id2label)
        config.id2label = dict(id2label)
        config.label2id = {name: i for i, name in id2label.items()}
        config.num_frames = num_frames
        config.classifier_dropout = classifier_dropout
        config.head_init_scale = head_init_scale
        config.architectures = [cls.__name__]
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()  # the new head is expected: checked below instead of reported as missing
        try:
            model, info = cls.from_pretrained(teacher_dir, config=config, output_loading_info=True, **kwargs)
        finally:
            logging.set_verbosity(verbosity)
        new = {name for name, _ in model.named_parameters() if name.startswith(("fc_norm.", "classifier."))}
        odd = sorted(set(info["missing_keys"]) ^ new) + sorted(info["unexpected_keys"])
        odd += sorted(str(key) for key in info["mismatched_keys"])
        if odd:
            raise ValueError(f"`teacher_dir` {str(teacher_dir)!r} does not load as the classifier's tower: "
                             f"differences {odd[:10]} (expected only the new head {sorted(new)}).")
        logger.info("Teacher classifier from %s: tower loaded, new fc_norm and head (%d classes).", teacher_dir,
                    config.num_labels)
        return model


def is_image_tower_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder whose config.json is a CLIP vision tower's (model_type "clip_vision_model")."""
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        return False
    return CLIPVisionConfig.get_config_dict(path)[0].get("model_type") == CLIPVisionConfig.model_type


__all__ = ["TeacherClassificationHead", "TeacherFrameLevelClassifier", "is_image_tower_folder"]
