#!/usr/bin/env python
"""Stage 1 of UMT: train a video ViT from scratch by aligning its unmasked tokens with a frozen image teacher.

    python training_scripts/run_stage1.py                      # built-in defaults: small student, synthetic videos, CPU
    python training_scripts/run_stage1.py config.yaml          # every argument from one JSON/YAML file
    python training_scripts/run_stage1.py --model_preset umt-b16 --teacher clip_b16 --teacher_pretrained openai \
        --train_data /data/k710_train.csv --num_frames 8 --image_size 224 --per_device_train_batch_size 64 \
        --learning_rate 1.5e-4 --scale_lr_by_batch --num_train_epochs 201 --warmup_steps 0.2 --bf16

With no arguments it generates the synthetic dataset on first use (into ~/.cache/umt, or $UMT_CACHE_DIR), trains a
small student against a small randomly initialised CLIP-shaped teacher (no CLIP weights can be downloaded here; pass
`--teacher clip_b16 --teacher_pretrained openai` or a local file for the real recipe), and saves the student to
`<output_dir>/model`, which `AutoModel.from_pretrained` loads as a `UMTVideoModel`.

All the logic lives in `modeling_umt` and `processors`; this file only parses arguments and wires objects.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

from transformers import TrainingArguments, set_seed

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modeling_umt import UMTConfig, UMTForPreTraining  # noqa: E402
from modeling_umt.cli import (  # noqa: E402
    BatchScaledTrainingArguments, StudentShapeArguments, TeacherArguments, VideoDataArguments, check_teacher_grid,
    load_split_records, parse_script_arguments, report_data, scale_learning_rate_by_batch,
)
from modeling_umt.teachers import UMTTeacher  # noqa: E402
from modeling_umt.trainers import DecoderEpochCallback, UMTDistillationTrainer  # noqa: E402
from processors.collate import VideoCollator  # noqa: E402
from processors.decoding import DecodeStats, VideoClipDecoder  # noqa: E402
from processors.rows import RowCheck  # noqa: E402
from processors.transforms import Stage1TrainTransform  # noqa: E402

logger = logging.getLogger("run_stage1")


@dataclass
class ModelArguments(StudentShapeArguments):
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Start from a saved UMTForPreTraining (or converted official Stage-1) dir."}
    )
    model_preset: str | None = field(
        default=None, metadata={"help": "'umt-b16' or 'umt-l16'; default: the small CPU student given below."}
    )
    patch_size: int = field(default=8, metadata={"help": "Spatial patch size (16 in every official model)."})
    drop_path_rate: float = field(default=0.1, metadata={"help": "Stochastic depth (0.1 B, 0.2 L)."})
    uta_num_layers: int = field(default=3, metadata={"help": "K aligned layers (6 in the official recipe)."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "'sdpa', 'eager' or 'flash_attention_2'."})


@dataclass
class DataArguments(VideoDataArguments):
    data_kind: str | None = field(default=None, metadata={"help": "table | folder | webdataset | hub (inferred)."})
    split: str | None = field(default="train", metadata={"help": "Split (column value for tables, split for the Hub)."})
    flip: bool = field(default=True, metadata={"help": "Random horizontal flip (official --flip True)."})


@dataclass
class Stage1TrainingArguments(BatchScaledTrainingArguments):
    """The official Stage-1 optimiser settings as defaults, at CPU-demo sizes."""

    output_dir: str = field(default="outputs/stage1")
    per_device_train_batch_size: int = field(default=8)
    learning_rate: float = field(default=1e-3)
    weight_decay: float = field(default=0.05)
    adam_beta1: float = field(default=0.9)
    adam_beta2: float = field(default=0.95)
    max_steps: int = field(default=200)
    save_steps: float = field(default=100)
    save_total_limit: int | None = field(default=2)
    dataloader_num_workers: int = field(default=1)


def build_student(model_args: ModelArguments, data_args: DataArguments, teacher: UMTTeacher) -> UMTForPreTraining:
    if model_args.model_name_or_path:
        return UMTForPreTraining.from_pretrained(
            model_args.model_name_or_path, attn_implementation=model_args.attn_implementation
        )
    common = dict(
        num_frames=data_args.num_frames,
        image_size=data_args.image_size,
        patch_size=model_args.patch_size,
        tubelet_size=1,
        drop_path_rate=model_args.drop_path_rate,
        use_final_norm=True,
        position_embedding_type="direct",
        initializer_type="xavier_uniform",
        uta_num_layers=model_args.uta_num_layers,
        uta_output_dim=teacher.output_dim,
    )
    if model_args.model_preset:
        config = UMTConfig.from_preset(model_args.model_preset, **common)
    else:
        config = UMTConfig(**model_args.shape(), **common)
    config._attn_implementation = model_args.attn_implementation
    return UMTForPreTraining(config)


def build_dataset(data_args: DataArguments, training_args: TrainingArguments):
    source, _ = data_args.train_source(training_args)
    stats = DecodeStats(max_bad_fraction=data_args.max_bad_fraction)
    check = RowCheck(strict=data_args.strict_data, stats=stats)  # Stage 1 needs a video per row, nothing else
    records = load_split_records(source, data_args.data_kind, data_args.split, data_args.streaming, check=check)
    decoder = VideoClipDecoder(
        num_frames=data_args.num_frames,
        sampling="tsn",
        transform=Stage1TrainTransform(data_args.image_size, flip_prob=0.5 if data_args.flip else 0.0),
        stats=stats,
        seed=training_args.seed,  # per-sample draws: a resumed run sees exactly the clips an uninterrupted one would
        **data_args.url_options(),
    )
    return data_args.training_dataset(records, decoder), decoder


def main(argv: list[str] | None = None) -> str:
    """Parse arguments, train, save; returns the directory of the saved student."""
    model_args, teacher_args, data_args, training_args = parse_script_arguments(
        (ModelArguments, TeacherArguments, DataArguments, Stage1TrainingArguments), argv
    )
    scale_learning_rate_by_batch(training_args)
    data_args.check_streaming(training_args)

    set_seed(training_args.seed)  # the student's initialisation is reproducible
    teacher = teacher_args.build(model_args.uta_num_layers, data_args.image_size, model_args.patch_size)
    model = build_student(model_args, data_args, teacher)
    check_teacher_grid(teacher, model.config)
    train_dataset, decoder = build_dataset(data_args, training_args)

    trainer = UMTDistillationTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=VideoCollator(),
        teacher=teacher,
        mask_type=teacher_args.mask_type,
        mask_ratio=teacher_args.mask_ratio,
        callbacks=[DecoderEpochCallback(decoder)],
    )
    final_dir = os.path.join(training_args.output_dir, "model")
    if not trainer.train_resuming(final_dir) and os.path.isdir(final_dir):
        logger.info("The run in %s is finished and %s is saved: nothing to do", training_args.output_dir, final_dir)
        report_data(decoder.stats, training_args)
        return final_dir
    trainer.save_model_atomic(final_dir, card_arguments=(model_args, teacher_args, data_args))
    logger.info("Saved the Stage-1 student, its video processor and card to %s (AutoModel.from_pretrained)", final_dir)
    report_data(decoder.stats, training_args)
    return final_dir


if __name__ == "__main__":
    main()
