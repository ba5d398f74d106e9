"""The UMT trainers: one shared base (`UMTTrainer`), a teacher-and-mask mixin for the pre-training stages, and one
module per stage.

    base.py             UMTTrainer: atomic checkpoints, step-seeded randomness, loss-term logging, prediction_step
    teacher_masking.py  TeacherMaskMixin: frozen teacher, semantic / random / tube mask, visible teacher targets
    distillation.py     UMTDistillationTrainer (Stage 1)
    vision_language.py  UMTVisionLanguageTrainer (Stage 2)
    finetuning.py       UMTFineTuningTrainer, top_k_compute_metrics
    detection.py        UMTActionDetectionTrainer (AVA-style action detection, frame-mAP evaluation)
    video_qa.py         UMTVideoQATrainer (video question answering)
    optim.py            weight-decay rules, layer-wise lr decay groups, lr scaling
    teacher_training.py FrameTextTeacherTrainer (the main job's small image-text teacher)
    callbacks.py        DecoderEpochCallback, ProgressFileCallback (progress.json with the ETA)
"""

from .base import UMTTrainer, output_loss_terms
from .callbacks import PROGRESS_FILE, DecoderEpochCallback, ProgressFileCallback
from .detection import UMTActionDetectionTrainer
from .distillation import UMTDistillationTrainer
from .finetuning import UMTFineTuningTrainer, smooth_one_hot, soft_target_cross_entropy, top_k_compute_metrics
from .optim import (
    decay_parameter_names,
    layer_decay_parameter_groups,
    scale_learning_rate,
    stage2_decay_parameter_names,
    umt_layer_id,
)
from .teacher_masking import TeacherMaskMixin
from .teacher_training import FrameTextTeacherTrainer, caption_compute_metrics
from .video_qa import UMTVideoQATrainer
from .vision_language import UMTVisionLanguageTrainer, cross_modal_parameter_names

__all__ = [
    "DecoderEpochCallback",
    "PROGRESS_FILE",
    "ProgressFileCallback",
    "FrameTextTeacherTrainer",
    "UMTActionDetectionTrainer",
    "TeacherMaskMixin",
    "UMTDistillationTrainer",
    "UMTFineTuningTrainer",
    "UMTTrainer",
    "UMTVideoQATrainer",
    "UMTVisionLanguageTrainer",
    "cross_modal_parameter_names",
    "caption_compute_metrics",
    "decay_parameter_names",
    "layer_decay_parameter_groups",
    "output_loss_terms",
    "scale_learning_rate",
    "smooth_one_hot",
    "soft_target_cross_entropy",
    "stage2_decay_parameter_names",
    "top_k_compute_metrics",
    "umt_layer_id",
]
