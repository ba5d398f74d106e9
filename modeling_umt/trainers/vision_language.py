"""Stage 2: `UMTVisionLanguageTrainer`, video-text training with VTC, VTM, MLM and UTA."""

from __future__ import annotations

from torch import nn

from processors.loaders import MediaInterleavedLoader

from .base import UMTTrainer
from .optim import stage2_decay_parameter_names
from .teacher_masking import TeacherMaskMixin


def _unwrapped_name(name: str) -> str:
    return name[len("module."):] if name.startswith("module.") else name


def cross_modal_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters on the matching path that a text encoder brings no pretrained value for: the
    cross-attention blocks of the fusion layers (`...crossattention...`) and the ITM head (`itm_head.*`)."""
    return [name for name, _ in model.named_parameters() if ".crossattention." in name or name.startswith("itm_head.")]


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
        cross_modal_lr_scale: learning-rate multiplier for the parameters that only the matching and masked-language
            losses train from scratch: the cross-attention of the fusion layers and the ITM head (official: 1, one
            learning rate for everything). Above 1, the freshly initialised matching path learns faster while the
            pretrained BERT keeps the base rate (see `cross_modal_parameter_names`).
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
        cross_modal_lr_scale: float = 1.0,
        **kwargs,
    ):
        if not cross_modal_lr_scale > 0:
            raise ValueError(f"`cross_modal_lr_scale` must be > 0, got {cross_modal_lr_scale}.")
        self.cross_modal_lr_scale = float(cross_modal_lr_scale)
        super().__init__(*args, **kwargs)
        self.setup_teacher_and_mask(teacher, mask_type, video_mask_ratio, image_mask_ratio)

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        return stage2_decay_parameter_names(model)

    def create_optimizer(self, model=None):
        """The Trainer's optimizer; with `cross_modal_lr_scale` != 1 its groups are (decay, no decay) x (base rate,
        scaled rate for `cross_modal_parameter_names`)."""
        if self.cross_modal_lr_scale == 1.0 or self.optimizer is not None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        scaled = set(cross_modal_parameter_names(self.accelerator.unwrap_model(opt_model)))
        groups = {}
        for name, param in opt_model.named_parameters():
            if not param.requires_grad:
                continue
            key = (name in decay, _unwrapped_name(name) in scaled)
            if key not in groups:
                lr = self.args.learning_rate * (self.cross_modal_lr_scale if key[1] else 1.0)
                groups[key] = {"params": [], "weight_decay": self.args.weight_decay if key[0] else 0.0, "lr": lr}
            groups[key]["params"].append(param)
        if not any(key[1] for key in groups):
            raise ValueError("`cross_modal_lr_scale` is set but the model has no cross-attention or ITM head to scale.")
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        optimizer_kwargs.pop("lr", None)
        self.optimizer = optimizer_cls(list(groups.values()), lr=self.args.learning_rate, **optimizer_kwargs)
        return self.optimizer

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
