"""Model cards: the README.md of every model folder a script or the converter publishes.

A card says what the model is (architecture, size, what it was trained or converted from), how it was trained (the
data and recipe: the script's arguments and the TrainingArguments that shape the run, the steps taken), its measured
metrics, a usage snippet that runs with the folder alone, and the licence (Apache-2.0). `write_model_card` writes it
(from `UMTTrainer.save_model_atomic` and the converter, through `modeling_umt.publishing.complete_model_folder`);
`update_model_card` rewrites only its metrics section when an evaluation finishes after the model was saved.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from processors.fileio import atomic_write_text

__all__ = ["CARD_NAME", "model_card", "read_card_metrics", "update_model_card", "write_model_card"]

CARD_NAME = "README.md"
_METRICS_START, _METRICS_END = "<!-- umt-card:metrics -->", "<!-- /umt-card:metrics -->"
_METRICS_JSON = "<!-- umt-card:metrics-json {} -->"
# The TrainingArguments that make a run's recipe (the rest are logging and bookkeeping).
RECIPE_FIELDS = (
    "max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate",
    "lr_scheduler_type", "warmup_steps", "warmup_ratio", "weight_decay", "adam_beta1", "adam_beta2", "optim",
    "max_grad_norm", "label_smoothing_factor", "bf16", "fp16", "seed",
)  # fmt: skip
_DATA_WORDS = ("data", "annotation", "train_file", "video_root", "split", "label", "dataset", "synthetic")

_KINDS = {
    "UMTForVideoClassification": ("a UMT video classifier (ViT, mean pooling, linear head)", "video-classification"),
    "UMTForPreTraining": ("a UMT Stage-1 video encoder (the student distilled from an image teacher)",
                          "feature-extraction"),
    "UMTVideoModel": ("a UMT video encoder", "feature-extraction"),
    "UMTForVideoTextRetrieval": ("a UMT Stage-2 video-text model (video ViT, BERT, fusion layers)",
                                 "zero-shot-video-classification"),
    "UMTForVideoMultipleChoice": ("a UMT video-text model scoring multiple-choice captions (0.7 ITM + 0.3 similarity)",
                                  "zero-shot-video-classification"),
    "UMTForVideoQuestionAnswering": ("a UMT video question-answering model (video ViT, BERT question encoder, answer "
                                     "decoder)", "video-question-answering"),
    "UMTForVideoActionDetection": ("a UMT spatiotemporal action detector (video ViT, ROIAlign head, AVA-style)",
                                   "action-detection"),
    "TeacherFrameLevelClassifier": ("a frame-level video classifier over a CLIP-style image tower (a UMT image "
                                    "teacher fine-tuned as a baseline: each frame encoded alone, the tower's projected "
                                    "image embeddings averaged over the frames, LayerNorm, linear head; frame order "
                                    "cannot matter to it)", "video-classification"),
}  # fmt: skip

_USAGE = {
    "video-classification": """from transformers import pipeline

classify = pipeline("video-classification", model="{model_id}", trust_remote_code=True)
classify("clip.mp4")          # [{{"label": ..., "score": ...}}, ...]""",
    "feature-extraction": """import torch
from transformers import AutoModel, AutoVideoProcessor

model = AutoModel.from_pretrained("{model_id}", trust_remote_code=True)
processor = AutoVideoProcessor.from_pretrained("{model_id}", trust_remote_code=True)
inputs = processor("clip.mp4", return_tensors="pt")    # {num_frames} frames sampled and decoded
with torch.no_grad():
    tokens = model(**inputs).last_hidden_state          # (1, tokens, hidden)""",
    "zero-shot-video-classification": """import torch
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("{model_id}", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("{model_id}", trust_remote_code=True)
inputs = processor(text=["a dog runs", "a man cooks"], videos=["clip.mp4"])
with torch.no_grad():
    scores = model(**inputs).logits_per_video.softmax(-1)   # (1 video, 2 captions)

# or, with `import modeling_umt` (this project installed):
# pipeline("zero-shot-video-classification", model="{model_id}")("clip.mp4", candidate_labels=["dog", "cooking"])""",
    "video-question-answering": """import torch
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("{model_id}", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("{model_id}", trust_remote_code=True)
inputs = processor(text=["what does the red square do?"], videos=["clip.mp4"])
with torch.no_grad():
    answer_ids = model.generate(**inputs)               # free-form answers; rank_answers(...) ranks an answer list
print(processor.tokenizer.batch_decode(answer_ids, skip_special_tokens=True))""",
    "action-detection": """import torch
from transformers import AutoModel, AutoVideoProcessor

model = AutoModel.from_pretrained("{model_id}", trust_remote_code=True)
processor = AutoVideoProcessor.from_pretrained("{model_id}", trust_remote_code=True)
import av, numpy as np
with av.open("clip.mp4") as container:                  # boxes are given in pixels of decoded frames
    frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
frames = frames[np.linspace(0, len(frames) - 1, {num_frames}).round().astype(int)]
person_boxes = [torch.tensor([[10.0, 20.0, 120.0, 200.0]])]   # xyxy, pixels of the original frames
inputs = processor(frames, boxes=person_boxes, return_tensors="pt")
with torch.no_grad():
    outputs = model(pixel_values=inputs["pixel_values"], boxes=inputs["boxes"])
scores = outputs.logits.sigmoid()                       # (boxes, actions)""",
}


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if hasattr(value, "value") and not isinstance(value, (int, str)):  # enums (IntervalStrategy, SchedulerType, ...)
        return value.value
    return value


def _arguments(arguments: Any) -> dict[str, Any]:
    """The fields of an argument dataclass (or a mapping) that are set, as plain values."""
    if dataclasses.is_dataclass(arguments):
        items = {f.name: getattr(arguments, f.name) for f in dataclasses.fields(arguments)}
    else:
        items = dict(arguments)
    return {k: _plain(v) for k, v in items.items() if v is not None and v != "" and not k.startswith("_")}


def _metrics_section(metrics: Mapping[str, Any] | None) -> str:
    lines = [_METRICS_START, "## Metrics", ""]
    flat = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if flat:
        lines += ["Measured by the script that saved this folder:", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in sorted(flat.items())]
    else:
        lines.append("No metrics were measured for this folder.")
    lines += ["", _METRICS_JSON.format(json.dumps(flat, sort_keys=True)), _METRICS_END]
    return "\n".join(lines)


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def model_card(
    config,
    *,
    num_parameters: int,
    model_id: str = "path/to/this/folder",
    origin: str | None = None,
    training_arguments: Any = None,
    script_arguments: Sequence[Any] = (),
    steps: int | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> str:
    """The card's Markdown for a model of `config` (front matter, description, training, metrics, usage, licence).

    origin: one line on where the weights come from (e.g. the converted official file); training_arguments: the
    run's TrainingArguments; script_arguments: the script's other argument dataclasses; steps: optimiser steps taken;
    metrics: measured values (nested dicts are flattened with '/')."""
    architecture = (getattr(config, "architectures", None) or ["UMT model"])[0]
    what, task = _KINDS.get(architecture, (f"a UMT model ({architecture})", "feature-extraction"))
    vision = getattr(config, "vision_config", None) or config
    shape = (f"{getattr(vision, 'num_hidden_layers', '?')} blocks of width {getattr(vision, 'hidden_size', '?')}, "
             f"{getattr(vision, 'num_frames', '?')} frames of {getattr(vision, 'image_size', '?')} px")  # fmt: skip
    labels = getattr(config, "id2label", None) or {}
    front = ["---", "license: apache-2.0", "library_name: transformers", "tags:", "- video", "- umt",
             "- custom_code"]  # fmt: skip
    if task != "zero-shot-video-classification":
        front.append(f"pipeline_tag: {task}")
    front.append("---")
    lines = front + ["", f"# {architecture}", "", f"This is {what}: {shape}, {num_parameters:,} parameters."]
    if task == "video-classification" and labels:
        names = [labels[k] for k in sorted(labels, key=int)]
        lines.append(f"It predicts {len(names)} classes: {', '.join(map(str, names[:20]))}"
                     + (", ..." if len(names) > 20 else "") + ".")  # fmt: skip
    lines += ["", "UMT is Unmasked Teacher (Li et al., ICCV 2023), implemented as a transformers model by the "
              "UMT-for-transformers project. The folder carries its code (`trust_remote_code=True` loads it without "
              "that package) and the processor that prepares its inputs.", "", "## Training", ""]  # fmt: skip
    if origin:
        lines.append(origin)
    if training_arguments is not None:
        recipe = _arguments(training_arguments)
        lines += ["", f"Trained for {steps if steps is not None else '?'} optimiser steps with this recipe "
                  "(TrainingArguments):", "", "| argument | value |", "|---|---|"]  # fmt: skip
        lines += [f"| {k} | {recipe[k]} |" for k in RECIPE_FIELDS if k in recipe]
        lines.append(f"| world_size | {getattr(training_arguments, 'world_size', 1)} |")
    script = {}
    for arguments in script_arguments:
        script.update(_arguments(arguments))
    if script:
        data = {k: v for k, v in script.items() if any(word in k for word in _DATA_WORDS)}
        if data:
            lines += ["", "Data: " + "; ".join(f"`{k}` = {json.dumps(v, default=str)}" for k, v in data.items()) + "."]
        lines += ["", "Script arguments:", "", "| argument | value |", "|---|---|"]
        lines += [f"| {k} | {json.dumps(v, default=str)} |" for k, v in script.items()]
    if not origin and training_arguments is None and not script:
        lines.append("No training record was given when this folder was saved.")
    lines += ["", _metrics_section(_flatten(metrics or {})), "", "## Usage", "", "```python",
              _USAGE[task].format(model_id=model_id, num_frames=getattr(vision, "num_frames", 8)), "```", "",
              "## Licence", "", "Apache-2.0 (the code and these weights' packaging; the data the weights were "
              "trained on keeps its own terms).", ""]  # fmt: skip
    return "\n".join(lines)


def write_model_card(folder: str | os.PathLike, model, **kwargs) -> Path:
    """Write `folder/README.md` for `model` (see `model_card` for the keywords); returns its path."""
    path = Path(folder) / CARD_NAME
    text = model_card(model.config, num_parameters=sum(p.numel() for p in model.parameters()), **kwargs)
    return atomic_write_text(path, text)


def read_card_metrics(folder: str | os.PathLike) -> dict[str, Any]:
    """The metrics recorded in `folder/README.md` (empty when it has none)."""
    text = (Path(folder) / CARD_NAME).read_text(encoding="utf-8")
    marker = _METRICS_JSON.split("{}")[0]
    start = text.find(marker)
    if start < 0:
        return {}
    end = text.index(" -->", start)
    return json.loads(text[start + len(marker) : end])


def update_model_card(folder: str | os.PathLike, metrics: Mapping[str, Any]) -> Path:
    """Add `metrics` (nested dicts flattened with '/') to the metrics of `folder/README.md`, which
    `write_model_card` wrote; a metric measured again replaces the old value."""
    path = Path(folder) / CARD_NAME
    if not path.is_file():
        raise FileNotFoundError(f"`folder` {str(folder)!r} has no {CARD_NAME} to update (write_model_card first)")
    text = path.read_text(encoding="utf-8")
    if _METRICS_START not in text or _METRICS_END not in text:
        raise ValueError(f"{path} has no metrics section (markers {_METRICS_START!r} ... {_METRICS_END!r})")
    merged = {**read_card_metrics(folder), **_flatten(metrics)}
    head, rest = text.split(_METRICS_START, 1)
    tail = rest.split(_METRICS_END, 1)[1]
    return atomic_write_text(path, head + _metrics_section(merged) + tail)
