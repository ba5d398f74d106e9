"""Fine-tuning: `UMTFineTuningTrainer` (layer-wise lr decay, mixup / cutmix with label smoothing, multi-view
evaluation; official §4.3, §6.2) and `top_k_compute_metrics`."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import evaluate
import torch
from timm.data.mixup import one_hot
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

from processors.mixing import VideoMixup

from ..metrics import metric_path
from .base import UMTTrainer
from .optim import layer_decay_parameter_groups

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# The fine-tuning loss: cross-entropy against mixed, label-smoothed targets
# ----------------------------------------------------------------------------------------------------------------
def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets: mean over the batch of sum_k -targets[k] * log_softmax(logits)[k].

    logits (B, K), targets (B, K) rows summing to 1 -> scalar float32 (timm's `SoftTargetCrossEntropy`, fed float32
    so it is computed in float32 under fp16 / bf16).
    """
    if logits.shape != targets.shape:
        raise ValueError(f"`targets` must have the shape of `logits` {tuple(logits.shape)}, got {tuple(targets.shape)}.")
    return SoftTargetCrossEntropy()(logits.float(), targets.float())


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(B,) class ids -> (B, K) float32 targets: 1 - smoothing + smoothing / K on the class, smoothing / K elsewhere
    (timm's `one_hot` with those values)."""
    off = smoothing / num_classes
    return one_hot(labels, num_classes, on_value=1.0 - smoothing + off, off_value=off)


class UMTFineTuningTrainer(UMTTrainer):
    """Fine-tune a `UMTForVideoClassification` with the official recipe (official_umt.md §4.3).

    - Optimizer groups with layer-wise lr decay (`layer_decay_parameter_groups`: ld ** (L + 1 - layer id)) and no
      weight decay for biases, norms and 1-D parameters; the optimizer class and its betas / eps come from
      `TrainingArguments` (official: AdamW, betas (0.9, 0.999), weight decay 0.05). The lr schedule multiplies every
      group's rate, so the decay ratios hold throughout (also under DeepSpeed, with the optimizer made here).
    - Mixup 0.8 / CutMix 1.0 (the official recipe, on by default) and label smoothing from
      `TrainingArguments.label_smoothing_factor` (transformers' default 0; official 0.1, the fine-tuning script's
      default) with soft-target cross-entropy (`VideoMixup`); set the alphas to 0 to turn mixing off. The recipe is
      logged when the trainer is built.
    - Drop path, dropout and gradient checkpointing come from the model / `TrainingArguments`
      (`--gradient_checkpointing`); bf16 / fp16 through `TrainingArguments` or the DeepSpeed config.
    - Every step draws its randomness (mixup, drop path) from a generator seeded by the step, and checkpoints are
      written atomically (`UMTTrainer`).
    - Evaluation: `pixel_values` (B, T, C, H, W) is one view per video; (B, V, T, C, H, W) are V views (e.g. 4 clips
      x 3 crops from `MultiViewClipDecoder`) whose per-view softmax is averaged per video, as the official `merge`.
      Predictions handed to `compute_metrics` are these (B, K) probabilities; the eval loss is their negative
      log-likelihood.

    Args:
        layer_decay: 0.75 for B/16, 0.85 for L/16 (None or 1 disables it).
        mixup_alpha, cutmix_alpha, mixup_prob, mixup_switch_prob: see `VideoMixup`.
        label_smoothing: None (default): `args.label_smoothing_factor`; a value must agree with a non-zero
            `args.label_smoothing_factor`.
        Other arguments are `transformers.Trainer`'s. Batches: {"pixel_values", "labels"} (`VideoCollator`).
    Logged besides `loss`: `mix_lam` (mean mixing coefficient since the last log).
    """

    def __init__(
        self,
        *args,
        layer_decay: float | None = 0.75,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        mixup_prob: float = 1.0,
        mixup_switch_prob: float = 0.5,
        label_smoothing: float | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        factor = self.args.label_smoothing_factor
        if label_smoothing is None:
            label_smoothing = factor
        elif factor and label_smoothing != factor:
            raise ValueError(
                f"`label_smoothing` {label_smoothing} disagrees with TrainingArguments.label_smoothing_factor {factor}; "
                f"set one of them (label_smoothing=None follows the TrainingArguments)."
            )
        if layer_decay is not None and not 0 < layer_decay <= 1:
            raise ValueError(f"`layer_decay` must be in (0, 1] or None, got {layer_decay}.")
        self.layer_decay = layer_decay
        num_labels = getattr(self.accelerator.unwrap_model(self.model).config, "num_labels", 0)
        self.mixup = VideoMixup(
            max(num_labels, 1), mixup_alpha, cutmix_alpha, mixup_prob, mixup_switch_prob, label_smoothing
        )
        self.recipe = dict(layer_decay=layer_decay, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha,
                           mixup_prob=mixup_prob, mixup_switch_prob=mixup_switch_prob, label_smoothing=label_smoothing)
        logger.info("Fine-tuning recipe: %s", ", ".join(f"{key}={value}" for key, value in self.recipe.items()))
        # The loss below is a per-micro-batch mean: the Trainer divides it by the accumulation steps itself.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        if not self.label_names:
            self.label_names = ["labels"]

    def create_optimizer(self, model=None):
        """The Trainer's optimizer class and hyper-parameters over `layer_decay_parameter_groups`."""
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            groups = layer_decay_parameter_groups(
                opt_model,
                self.args.learning_rate,
                self.args.weight_decay,
                self.layer_decay,
                num_layers=self.accelerator.unwrap_model(opt_model).config.num_hidden_layers,
            )
            if self.optimizer_cls_and_kwargs is not None:
                optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
            else:
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The Trainer's schedule; `cosine_with_min_lr` with `{"min_lr": x}` is read as a floor of x for the base rate
        (x * lr_scale per group, the official `min_lr`), which also works on DeepSpeed's optimizer (it has no
        `defaults` for transformers to read the base rate from)."""
        kwargs = self.args.lr_scheduler_kwargs if isinstance(self.args.lr_scheduler_kwargs, dict) else {}
        if self.lr_scheduler is None and self.args.lr_scheduler_type == "cosine_with_min_lr" and "min_lr" in kwargs:
            rest = {k: v for k, v in kwargs.items() if k != "min_lr"}
            self.lr_scheduler = get_cosine_with_min_lr_schedule_with_warmup(
                self.optimizer if optimizer is None else optimizer,
                num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                num_training_steps=num_training_steps,
                min_lr_rate=kwargs["min_lr"] / self.args.learning_rate,
                **rest,
            )
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        pixel_values, labels = inputs["pixel_values"], inputs.get("labels")
        if model.training:
            if labels is None:
                raise ValueError("Training batches must hold `labels` (B,) next to `pixel_values`.")
            pixel_values, targets, lam = self.mixup(pixel_values, labels)
            outputs = model(pixel_values=pixel_values)
            loss = soft_target_cross_entropy(outputs.logits, targets)
            self.record({"mix_lam": lam})
            return (loss, outputs) if return_outputs else loss
        probs = self.predict_probabilities(model, pixel_values)
        loss = None if labels is None else torch.nn.functional.nll_loss(probs.clamp_min(1e-12).log(), labels.long())
        return (loss, probs) if return_outputs else loss

    @staticmethod
    def predict_probabilities(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        """Class probabilities per video: (B, T, C, H, W) -> softmax (B, K); (B, V, T, C, H, W) -> the mean over the
        V views of each view's softmax (official multi-view `merge`). float32."""
        if pixel_values.ndim == 5:
            return model(pixel_values=pixel_values).logits.float().softmax(-1)
        if pixel_values.ndim != 6:
            raise ValueError(
                f"`pixel_values` must be (B, T, C, H, W) or (B, V, T, C, H, W), got {tuple(pixel_values.shape)}."
            )
        b, v = pixel_values.shape[:2]
        logits = model(pixel_values=pixel_values.flatten(0, 1)).logits.float()  # (B * V, K), views grouped by video
        return logits.softmax(-1).view(b, v, -1).mean(1)

    def predictions_from(self, outputs: torch.Tensor) -> torch.Tensor:
        """Evaluation hands the (multi-view) class probabilities (B, K) to `compute_metrics`."""
        return outputs


def top_k_compute_metrics(k: Sequence[int] = (1, 5), metrics_dir: str | None = None):
    """A `compute_metrics` for `UMTFineTuningTrainer`: top-k accuracies of the (multi-view) probabilities through the
    `evaluate` module `modeling_umt/metrics/top_k_accuracy.py` (loaded by path, no Hub access).

    Returns:
        fn(EvalPrediction) -> {"top1": ..., "top5": ...} (fractions in [0, 1]; k values above K count as correct).
    """
    metric = evaluate.load(os.path.join(metrics_dir, "top_k_accuracy") if metrics_dir else metric_path("top_k_accuracy"))

    def compute_metrics(prediction) -> dict[str, float]:
        scores, labels = prediction.predictions, prediction.label_ids
        return metric.compute(predictions=scores, references=labels, k=list(k))

    return compute_metrics


__all__ = ["UMTFineTuningTrainer", "smooth_one_hot", "soft_target_cross_entropy", "top_k_compute_metrics"]
