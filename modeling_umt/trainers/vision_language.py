"""Stage 2: `UMTVisionLanguageTrainer`, video-text training with VTC, VTM, MLM and UTA."""

from __future__ import annotations

from torch import nn

from processors.loaders import MediaInterleavedLoader

from .base import UMTTrainer
from .optim import stage2_decay_parameter_names
from .teacher_masking import TeacherMaskMixin


class UMTVisionLanguageTrainer(TeacherMaskMixin, UMTTrainer):
    """Stage 2: train a `UMTForVideoTextRetrieval` with VTC, VTM (hard negatives), MLM and UTA (official §5.3-5.4).

    Each step: the frozen teacher (optional) gives the last-K targets and class-token attention of the batch; a
    semantic mask drops `video_mask_ratio` (0.8) of every frame's tokens for videos and `image_mask_ratio` (0.5) for
    images (T = 1); the student sees only the visible tokens for every loss; the model returns the four losses,
    weighted by its config (default 1 each). Without a teacher there is no mask and no UTA (the official retrieval
    fine-tuning, `clip_teacher="none"`).

    Args:
        teacher: a frozen `UMTTeacher` or None. Kept outside the model (never optimised, saved or ZeRO-partitioned).
        mask_type: "attention" (semantic, official), "random" or "tube".
        video_mask_ratio, image_mask_ratio: fractions of tokens dropped per frame.
        train_dataset: one dataset, or a dict {media name: dataset} (e.g. {"video": ..., "image": ...}); with a
            dict every batch comes from one media type, interleaved in a shuffled order (`MediaInterleavedLoader`).
        Other arguments are `transformers.Trainer`'s; the official optimiser is AdamW lr 1e-4 (absolute), betas
        (0.9, 0.999), weight decay 0.02, cosine with warm-up (see `training_scripts/run_stage2.py`). Weight decay
        follows the official rule: none on 1-D parameters and biases, applied to the temperature.

    Inputs per batch (`processors.video_text.VideoTextCollator`): pixel_values (B, T, C, H, W), input_ids and
    attention_mask (B, L), optional ids (B,). Logged besides `loss`: loss_vtc, loss_vtm, loss_mlm, loss_uta (each
    unweighted), temperature, visible_ratio, and image_batches (fraction of steps on images since the last log).
    Evaluation reports the Stage-2 loss only (retrieval metrics come from `training_scripts/run_retrieval.py`).
    """

    def __init__(
        self,
        *args,
        teacher: nn.Module | None = None,
        mask_type: str = "attention",
        video_mask_ratio: float = 0.8,
        image_mask_ratio: float = 0.5,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.setup_teacher_and_mask(teacher, mask_type, video_mask_ratio, image_mask_ratio)

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        return stage2_decay_parameter_names(model)

    def get_train_dataloader(self):
        if not isinstance(self.train_dataset, dict):
            return super().get_train_dataloader()
        loaders = {}
        full = self.train_dataset
        try:
            for name, dataset in full.items():
                self.train_dataset = dataset
                loaders[name] = super().get_train_dataloader()
        finally:
            self.train_dataset = full
        return MediaInterleavedLoader(loaders, seed=self.args.seed)

    def model_outputs(self, model, inputs):
        pixel_values = inputs["pixel_values"]
        mask, targets = self.teacher_targets(pixel_values, model.training)
        outputs = model(
            pixel_values=pixel_values,
            input_ids=inputs["input_ids"],
            attention_mask=inputs.get("attention_mask"),
            ids=inputs.get("ids"),
            bool_masked_pos=mask,
            teacher_features=targets,
            return_loss=True,
        )
        if model.training:
            unwrapped = self.accelerator.unwrap_model(model)
            if hasattr(unwrapped, "temp"):
                self.record({"temperature": float(unwrapped.temp.detach())})
            self.record({"image_batches": float(pixel_values.shape[1] == 1)})
        return outputs


__all__ = ["UMTVisionLanguageTrainer"]
