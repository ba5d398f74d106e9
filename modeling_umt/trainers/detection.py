"""Action detection: `UMTActionDetectionTrainer` (official AVA recipe: layer-wise lr decay, BCE loss over boxes,
frame-mAP evaluation)."""

from __future__ import annotations

import time
from collections.abc import Callable

from transformers.trainer_utils import speed_metrics

from ..detection_evaluation import collect_detections
from .finetuning import UMTFineTuningTrainer


class UMTActionDetectionTrainer(UMTFineTuningTrainer):
    """Fine-tune a `UMTForVideoActionDetection` (qa_and_detection.md §B "Optimization").

    - The optimizer, layer-wise lr decay and schedule of `UMTFineTuningTrainer` (official: AdamW, weight decay 0.05,
      layer decay 0.75 B / 0.85 L, cosine with warm-up); no mixup, no label smoothing (the official detector uses none).
    - Loss: the model's own (`action_detection_loss`: BCE mean over classes x number of boxes), on batches of
      `DetectionTrainTransform` samples through `DetectionCollator` (pixel_values, boxes and labels per clip).
    - `evaluate`: the detector on every evaluation batch (`DetectionEvalTransform` samples), detections through
      `collect_detections`, then `metrics_from_detections(detections) -> {name: value}` (e.g. frame-mAP against the
      ground-truth CSV); logged and returned with the `eval_` prefix. It runs on the main process's full evaluation
      set, as the official evaluation runs on rank 0.

    Args:
        label_ids: the action id of each logit column (e.g. 1..80).
        metrics_from_detections: see above.
        Other arguments are `UMTFineTuningTrainer`'s (mixing is forced off).
    """

    def __init__(self, *args, label_ids: list[int], metrics_from_detections: Callable[[dict], dict], **kwargs):
        kwargs.update(mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.0)
        super().__init__(*args, **kwargs)
        self.label_ids = list(label_ids)
        self.metrics_from_detections = metrics_from_detections

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        outputs = model(pixel_values=inputs["pixel_values"], boxes=inputs["boxes"], labels=inputs["labels"])
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataloader = self.get_eval_dataloader(eval_dataset)
        start = time.time()
        detections = collect_detections(self.accelerator.unwrap_model(self.model), dataloader, self.label_ids)
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in self.metrics_from_detections(detections).items()}
        metrics.update(speed_metrics(metric_key_prefix, start, num_samples=len(detections)))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


__all__ = ["UMTActionDetectionTrainer"]
