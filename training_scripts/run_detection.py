#!/usr/bin/env python
"""Fine-tune UMT for spatio-temporal action detection (AVA layout) with the official recipe, evaluate frame-mAP@0.5.

    python training_scripts/run_detection.py                                   # CPU demo on the synthetic AVA set
    python training_scripts/run_detection.py --model_name_or_path outputs/stage1/model      # from a Stage-1 student
    python training_scripts/run_detection.py --keyframe_only                   # baseline: the model sees the keyframe
    python training_scripts/run_detection.py --model_name_or_path converted/k710_b16 --num_frames 8 \\
        --train_annotations ava_train_v2.2.csv --val_annotations ava_val_v2.2.csv \\
        --val_proposals ava_val_person_proposals.csv --val_exclusions ava_val_excluded_timestamps_v2.2.csv \\
        --label_map ava_action_list_v2.2_for_activitynet_2019.pbtxt --video_template 'clips/{video_id}/{timestamp}.mp4' \\
        --short_side_size 256 --crop_size 224 --flip True --patch_pad 16 --scale_lr_by_batch ...  # AVA

Defaults are the official B/16 recipe (qa_and_detection.md §B): AdamW, lr 2.5e-4 (x batch / 256 with
--scale_lr_by_batch: 1.25e-4 at the official batch 128), layer decay 0.75 (0.85 for L), weight decay 0.05, warm-up 5
of 30 epochs, drop path 0.2 (0.4 for L), min lr 1e-6, ground-truth boxes jittered for training, detector boxes
(score >= 0.8) enlarged by (0.1, 0.05) for testing; at CPU-demo sizes for the step budget.

Outputs under --output_dir: checkpoints, `model/` (the `UMTForVideoActionDetection` with its
`UMTDetectionVideoProcessor`; `AutoModel.from_pretrained` loads it) and `eval_results.json` (frame-mAP@0.5 and the
AP of every action, in percent).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field

import datasets
import transformers

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modeling_umt import UMTDetectionConfig, UMTForVideoActionDetection  # noqa: E402
from modeling_umt.cli import (  # noqa: E402
    BatchScaledTrainingArguments, StudentShapeArguments, VideoDataArguments, parse_script_arguments, report_data,
    scale_learning_rate_by_batch,
)
from modeling_umt.detection_evaluation import ava_frame_map_metrics  # noqa: E402
from modeling_umt.loading import load_action_detector  # noqa: E402
from modeling_umt.trainers import DecoderEpochCallback, UMTActionDetectionTrainer  # noqa: E402
from processors.decoding import DecodeStats, PreloadedVideoClips, VideoClipDecoder, decode_videos  # noqa: E402
from processors.detection import (  # noqa: E402
    DetectionCollator, DetectionEvalTransform, DetectionTrainTransform, read_ava_annotations, read_ava_exclusions,
    read_ava_label_map, records_from_ava,
)
from processors.rows import RowCheck  # noqa: E402
from processors.synthetic_ava import ensure_synthetic_ava_dataset  # noqa: E402
from processors.video_processing_umt_detection import UMTDetectionVideoProcessor  # noqa: E402

logger = logging.getLogger("run_detection")


@dataclass
class ModelArguments(StudentShapeArguments):
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A run_stage1 output, a UMTForVideoClassification (e.g. a converted K710 model), a UMT "
                          "encoder or a detector. Default: random init of the demo shape."},
    )
    patch_size: int = field(default=8, metadata={"help": "Random-init patch size (16 in every official model)."})
    drop_path_rate: float = field(default=0.2, metadata={"help": "Stochastic depth (official 0.2 B, 0.4 L)."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "'sdpa', 'eager' or 'flash_attention_2'."})


@dataclass
class DataArguments(VideoDataArguments):
    train_annotations: str | None = field(
        default=None, metadata={"help": "AVA training CSV; default: the built-in synthetic AVA set."})
    val_annotations: str | None = field(default=None, metadata={"help": "AVA validation (ground-truth) CSV."})
    val_proposals: str | None = field(
        default=None, metadata={"help": "Person boxes with scores for testing (CSV); default: the ground truth."})
    val_exclusions: str | None = field(default=None, metadata={"help": "AVA excluded-timestamps CSV."})
    label_map: str | None = field(default=None, metadata={"help": "AVA label-map pbtxt (the evaluated actions)."})
    video_template: str | None = field(
        default=None, metadata={"help": "Clip of a keyframe, e.g. 'clips/{video_id}/{timestamp}.mp4'."})
    proposal_threshold: float = field(default=0.8, metadata={"help": "Keep test proposals scoring at least this."})
    short_side_size: int = field(default=64, metadata={"help": "Resize of the short side (official 256)."})
    crop_size: int = field(default=64, metadata={"help": "Training crop (official 224)."})
    flip: bool = field(
        default=False,
        metadata={"help": "Horizontal flip p=0.5 (official on AVA). Off by default: the synthetic actions name "
                          "directions."})
    patch_pad: int | None = field(
        default=None, metadata={"help": "Pad test frames to multiples of this (official 16); default: the patch."})
    keyframe_only: bool = field(default=False, metadata={"help": "Baseline: every frame replaced by the keyframe."})
    synthetic_num_videos: int = field(default=600, metadata={"help": "Clips of the synthetic AVA set."})
    preload_videos: bool | None = field(
        default=None, metadata={"help": "Decode every clip once into memory (default: on for the synthetic set)."})


@dataclass
class DetectionTrainingArguments(BatchScaledTrainingArguments):
    """The official AVA optimiser settings as defaults, at CPU-demo sizes."""

    output_dir: str = field(default="outputs/detection")
    per_device_train_batch_size: int = field(default=8)
    per_device_eval_batch_size: int = field(default=8)
    learning_rate: float = field(default=2.5e-4)
    weight_decay: float = field(default=0.05)
    adam_beta1: float = field(default=0.9)
    adam_beta2: float = field(default=0.999)
    lr_scheduler_type: str = field(default="cosine_with_min_lr")
    lr_scheduler_kwargs: dict | str | None = field(default_factory=lambda: {"min_lr": 1e-6})
    warmup_steps: float = field(default=5 / 30)
    max_steps: int = field(default=300)
    eval_strategy: str = field(default="no")
    save_steps: float = field(default=100)
    save_total_limit: int | None = field(default=1)
    layer_decay: float = field(default=0.75, metadata={"help": "Layer-wise lr decay (official 0.75 B, 0.85 L)."})


def data_files(data_args: DataArguments, training_args) -> dict:
    """The AVA files (the synthetic set's when no --train_annotations), and the groups of actions to report."""
    if data_args.train_annotations is not None:
        needed = ("val_annotations", "label_map", "video_template")
        missing = [name for name in needed if getattr(data_args, name) is None]
        if missing:
            raise ValueError(f"--train_annotations needs {', '.join('--' + m for m in missing)} too")
        return dict(train=data_args.train_annotations, val=data_args.val_annotations,
                    proposals=data_args.val_proposals, exclusions=data_args.val_exclusions,
                    label_map=data_args.label_map, template=data_args.video_template, groups={}, synthetic=False)
    with training_args.main_process_first(desc="synthetic AVA set"):
        root = ensure_synthetic_ava_dataset(num_videos=data_args.synthetic_num_videos,
                                            num_frames=data_args.num_frames)
    info = json.loads((root / "info.json").read_text())
    motion = info["motion_actions"]
    others = [int(k) for k in info["actions"] if int(k) not in motion]
    ann = root / "annotations"
    return dict(train=str(ann / "train.csv"), val=str(ann / "val.csv"), proposals=str(ann / "val_proposals.csv"),
                exclusions=str(ann / "val_excluded_timestamps.csv"), label_map=str(ann / "label_map.pbtxt"),
                template=str(root / "videos" / "{video_id}.mp4"), groups={"motion": motion, "appearance": others},
                synthetic=True)


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_script_arguments(
        (ModelArguments, DataArguments, DetectionTrainingArguments), argv)
    scale_learning_rate_by_batch(training_args)
    files = data_files(data_args, training_args)
    label_map = read_ava_label_map(files["label_map"])
    label_ids = sorted(label_map)
    id2label = {i: label_map[a] for i, a in enumerate(label_ids)}

    transformers.set_seed(training_args.seed)  # the fresh head (and a random init) is reproducible
    if model_args.model_name_or_path:
        model = load_action_detector(model_args.model_name_or_path, id2label, drop_path_rate=model_args.drop_path_rate)
    else:
        g = data_args.crop_size // model_args.patch_size
        model = UMTForVideoActionDetection(UMTDetectionConfig(
            **model_args.shape(), patch_size=model_args.patch_size, num_frames=data_args.num_frames,
            image_size=data_args.crop_size, pos_embed_reference_frames=data_args.num_frames,
            pos_embed_reference_grid=g, drop_path_rate=model_args.drop_path_rate, num_labels=len(id2label),
            id2label=id2label, label2id={v: k for k, v in id2label.items()}))
    model.config._attn_implementation = model_args.attn_implementation
    patch = model.config.patch_hw[0]

    keyframe = data_args.keyframe_only
    train_transform = DetectionTrainTransform(data_args.short_side_size, data_args.crop_size,
                                              flip_prob=0.5 if data_args.flip else 0.0, keyframe_only=keyframe)
    eval_transform = DetectionEvalTransform(data_args.short_side_size, data_args.patch_pad or patch,
                                            keyframe_only=keyframe)
    stats = DecodeStats(max_bad_fraction=data_args.max_bad_fraction)
    check = RowCheck(strict=data_args.strict_data, stats=stats)  # every AVA line checked once, bad ones counted
    train_decoder = VideoClipDecoder(data_args.num_frames, "middle", train_transform, stats=stats,
                                     seed=training_args.seed)
    eval_decoder = VideoClipDecoder(data_args.num_frames, "middle", eval_transform, stats=stats)
    val_annotations = read_ava_annotations(files["val"], check=check)  # read once: records and evaluation
    val_excluded = read_ava_exclusions(files["exclusions"], check)
    train_records = records_from_ava(files["train"], files["template"], label_ids, check=check)
    val_records = records_from_ava(val_annotations, files["template"], label_ids, proposals=files["proposals"],
                                   exclusions=val_excluded, proposal_threshold=data_args.proposal_threshold,
                                   check=check)
    preload = data_args.preload_videos if data_args.preload_videos is not None else files["synthetic"]
    if preload:
        train, val = PreloadedVideoClips(train_records, train_decoder), PreloadedVideoClips(val_records, eval_decoder)
    else:
        train = decode_videos(datasets.Dataset.from_list(train_records), train_decoder)
        val = decode_videos(datasets.Dataset.from_list(val_records), eval_decoder)
    logger.info("%d training keyframes, %d test keyframes, %d actions%s", len(train), len(val), len(label_ids),
                " (keyframe only)" if keyframe else "")

    processor = UMTDetectionVideoProcessor(size={"shortest_edge": data_args.short_side_size},
                                           pad_multiple=data_args.patch_pad or patch)
    trainer = UMTActionDetectionTrainer(
        model=model, args=training_args, train_dataset=train, eval_dataset=val, data_collator=DetectionCollator(),
        processing_class=processor,
        callbacks=[DecoderEpochCallback(train_decoder)], layer_decay=training_args.layer_decay, label_ids=label_ids,
        metrics_from_detections=ava_frame_map_metrics(val_annotations, label_map, val_excluded, files["groups"]),
    )
    final_dir = os.path.join(training_args.output_dir, "model")
    results_path = os.path.join(training_args.output_dir, "eval_results.json")
    if not trainer.train_resuming(final_dir) and os.path.isdir(final_dir) and os.path.isfile(results_path):
        logger.info("The run in %s is finished and %s is saved: nothing to do", training_args.output_dir, final_dir)
        report_data(stats, training_args)
        with open(results_path) as f:
            return {"model_dir": final_dir, "eval": json.load(f)}
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    trainer.save_model_atomic(final_dir, save_extras=processor.save_pretrained)
    trainer.accelerator.wait_for_everyone()
    logger.info("Saved the detector and its video processor to %s", final_dir)
    report_data(stats, training_args)
    return {"model_dir": final_dir, "eval": metrics}


if __name__ == "__main__":
    main()
