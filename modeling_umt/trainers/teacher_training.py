"""`FrameTextTeacherTrainer`: trains the small CLIP-style image-text teacher of `modeling_umt.teachers.frame_text`.

Each training batch holds one-frame clips (`pixel_values` (B, 1, 3, H, W)) and the index of each frame's caption in
the teacher's caption list (`caption_index` (B,)). Evaluation hands the (N, C) caption logits to `compute_metrics`
(`caption_compute_metrics`: zero-shot top-1 over the captions and the share of caption words predicted right).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .base import UMTTrainer

__all__ = ["FrameTextTeacherTrainer", "caption_compute_metrics"]


class FrameTextTeacherTrainer(UMTTrainer):
    def model_outputs(self, model, inputs: dict):
        return model(pixel_values=inputs["pixel_values"], caption_index=inputs.get("caption_index"))

    def predictions_from(self, outputs) -> torch.Tensor:
        return outputs.logits


def caption_compute_metrics(captions: Sequence[str]):
    """`compute_metrics` for caption logits: `top1` (the right caption among all C) and `word_accuracy` (the share
    of the true caption's words, position by position, that the predicted caption has: for "a red striped square"
    colour, texture and shape each count for a third). Labels are the true caption indices."""
    words = [caption.split() for caption in captions]

    def compute(eval_prediction) -> dict[str, float]:
        logits, labels = eval_prediction.predictions, eval_prediction.label_ids
        predicted = np.asarray(logits).argmax(-1)
        labels = np.asarray(labels).reshape(-1)
        matches = []
        for p, t in zip(predicted, labels):
            truth, guess = words[int(t)], words[int(p)]
            matches.append(sum(a == b for a, b in zip(truth, guess)) / max(len(truth), 1))
        return {"top1": float((predicted == labels).mean()), "word_accuracy": float(np.mean(matches)),
                "chance_top1": 1.0 / len(captions)}

    return compute
