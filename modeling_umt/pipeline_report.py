"""The main job's report: what each stage reached, the paper's argument as ablation rows, and the figures.

Reads only what the training scripts leave in their output folders (trainer_state.json, test_results.json,
zero_shot_results.json, retrieval_metrics.json, model/), so it works on a finished run without retraining.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import AutoModel, AutoModelForVideoClassification

from .teachers import build_teacher
from .visualization import (
    confusion_matrix,
    load_clips,
    loss_terms,
    plot_confusion_matrix,
    plot_loss_curves,
    plot_semantic_masks,
    read_log_history,
)

__all__ = ["Ablation", "ablation_rows", "ablation_table", "classifier_predictions", "loss_summary", "read_json",
           "stage_table", "check_features", "make_figures"]


def read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def loss_summary(stage_dir: str, terms: Sequence[str] = ()) -> dict:
    """First and last logged value of the training loss (and of `terms`) of a Trainer run."""
    curves = loss_terms(read_log_history(stage_dir))
    out = {}
    for key in ("loss", *terms):
        if key in curves:
            steps, values = curves[key]
            out[key] = {"start": values[0], "end": values[-1], "steps": steps[-1]}
    return out


def check_features(model_dir: str, videos: Sequence[str]) -> dict:
    """Load a Stage-1 student through AutoModel and encode clips: what a user gets back."""
    model = AutoModel.from_pretrained(model_dir).eval()
    cfg = model.config
    pixel_values = load_clips(list(videos), num_frames=cfg.num_frames, image_size=cfg.image_hw[0])
    with torch.no_grad():
        out = model(pixel_values)
    return {"model_class": type(model).__name__, "last_hidden_state": list(out.last_hidden_state.shape),
            "pooler_output": list(out.pooler_output.shape)}


@torch.no_grad()
def classifier_predictions(model_dir: str, videos: Sequence[str], batch_size: int = 64) -> list[int]:
    """Top-1 class of a saved video classifier on each video (one centre view of `num_frames` frames)."""
    model = AutoModelForVideoClassification.from_pretrained(model_dir).eval()
    cfg = model.config
    predictions: list[int] = []
    for start in range(0, len(videos), batch_size):
        clips = load_clips(list(videos[start:start + batch_size]), num_frames=cfg.num_frames,
                           image_size=cfg.image_hw[0])
        predictions += model(clips).logits.argmax(-1).tolist()
    return predictions


@dataclass
class Ablation:
    """One row of the paper's argument: `claim` holds when `value` - `baseline` > `margin` (points of top-1)."""

    claim: str
    model: str
    value: float | None  # top-1 in %, None when the stage is missing
    baseline_name: str
    baseline: float | None
    paper: str  # where the paper makes this claim
    margin: float = 0.0
    note: str = ""

    @property
    def difference(self) -> float | None:
        return None if self.value is None or self.baseline is None else self.value - self.baseline

    @property
    def verdict(self) -> str:
        if self.difference is None:
            return "not measured"
        return "reproduced" if self.difference > self.margin else "NOT reproduced"


def _top1(result: dict | None) -> float | None:
    return None if result is None or result.get("test_top1") is None else 100.0 * result["test_top1"]


def _mean(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return None if not values else sum(values) / len(values)


def ablation_rows(top1: dict[str, float | None], seeds: dict[str, list[float | None]]) -> list[Ablation]:
    """The four claims of the issue from the fine-tuning top-1s (in %): `top1[name]` per fine-tuning stage, `seeds`
    the per-seed top-1s of the stages run with several seeds (their mean is the row's number)."""
    stage1, random_init = _mean(seeds["finetune"]), _mean(seeds["finetune_random_init"])
    n = len(seeds["finetune"])
    return [
        Ablation("Stage-1 initialisation beats random initialisation", f"from the Stage-1 student (mean of {n} "
                 "seeds)", stage1, f"random initialisation (mean of {n} seeds)", random_init,
                 "Sec. 4.1: UMT trains from scratch; its Stage 1 is what fine-tuning starts from",
                 note="per seed: " + ", ".join(
                     f"{a:.1f} vs {b:.1f}" for a, b in zip(seeds["finetune"], seeds["finetune_random_init"])
                     if a is not None and b is not None)),
        Ablation("a spatiotemporal student reads temporal order; a frame-level model cannot",
                 "UMT student (joint space-time attention)", top1["finetune"],
                 "the same weights, frames encoded alone and averaged", top1["finetune_frame_level"],
                 "Sec. 3: joint space-time attention; every class here has a time-reversed twin (bound 50% for an "
                 "order-blind model)"),
        Ablation("semantic masking beats random masking", "Stage 1 with semantic masking", top1["finetune"],
                 "Stage 1 with random masking (same ratio)", top1["finetune_random_mask"],
                 "Table 2 (semantic vs random masking)"),
        Ablation("the student beats its image teacher on motion", "UMT student", top1["finetune"],
                 "the image teacher's frame features, fine-tuned the same way", top1["finetune_teacher"],
                 "Sec. 1: the teacher knows what is in a frame; the student also learns how things move"),
    ]


def ablation_table(rows: Sequence[Ablation]) -> str:
    def pct(v):
        return "-" if v is None else f"{v:.1f}%"

    lines = ["| claim (paper) | model | top-1 | baseline | baseline top-1 | difference | verdict |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        diff = "-" if r.difference is None else f"{r.difference:+.1f}"
        note = f" ({r.note})" if r.note else ""
        lines.append(f"| {r.claim} ({r.paper}) | {r.model} | {pct(r.value)} | {r.baseline_name} | {pct(r.baseline)} "
                     f"| {diff}{note} | {r.verdict} |")
    return "\n".join(lines)


def stage_table(rows: Sequence[tuple[str, str, str, str, str]]) -> str:
    lines = ["| stage | trained | seconds | loss start -> end | result |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    return "\n".join(lines)


def make_figures(figures: str, curves: dict[str, str], teacher_dir: str, mask_videos: Sequence[str],
                 mask_titles: Sequence[str], classifier_dir: str, test_videos: Sequence[str],
                 test_labels: Sequence[int], class_names: Sequence[str], student_image_size: int,
                 student_patch_size: int, num_frames: int) -> dict:
    """Loss curves of every stage, the trained teacher's semantic masks on held-out clips, the fine-tuned
    classifier's confusion matrix on the test clips. Returns {name: path, "test_confusion": counts}."""
    out = {"loss_curves": str(plot_loss_curves(curves, os.path.join(figures, "loss_curves.png")))}
    teacher = build_teacher(f"hf:{teacher_dir}", num_return_layers=1, image_size=student_image_size,
                            patch_size=student_patch_size).eval()
    # Shown at 4x the student's resolution so the shapes can be seen; the teacher resizes to its own 16 px.
    clips = load_clips(list(mask_videos), num_frames=num_frames, image_size=4 * student_image_size)
    with torch.no_grad():
        out["semantic_masks"] = str(plot_semantic_masks(
            clips, teacher, os.path.join(figures, "semantic_masks.png"), mask_ratio=0.8, titles=list(mask_titles),
            teacher_name="the image-text teacher trained by run_teacher.py"))
    predictions = classifier_predictions(classifier_dir, test_videos)
    matrix = confusion_matrix(test_labels, predictions, len(class_names))
    out["confusion_matrix"] = str(plot_confusion_matrix(
        matrix, class_names, os.path.join(figures, "confusion_matrix.png"),
        title="fine-tuned UMT student, test clips, 1 centre view"))
    out["test_confusion"] = matrix.tolist()
    return out
