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

import torch
from transformers import TrainingArguments, set_seed

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modeling_umt.cli import parse_script_arguments  # noqa: E402
from modeling_umt import UMTConfig, UMTForPreTraining  # noqa: E402
from modeling_umt.teachers import UMTTeacher  # noqa: E402
from modeling_umt.teachers import build_teacher as create_teacher  # noqa: E402
from modeling_umt.trainers import DecoderEpochCallback, UMTDistillationTrainer, scale_learning_rate  # noqa: E402
from processors.collate import VideoCollator  # noqa: E402
from processors.datasets import load_video_records  # noqa: E402
from processors.decoding import DecodeStats, VideoClipDecoder, decode_videos  # noqa: E402
from processors.synthetic import ensure_synthetic_dataset  # noqa: E402
from processors.transforms import Stage1TrainTransform  # noqa: E402

logger = logging.getLogger("run_stage1")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Start from a saved UMTForPreTraining (or converted official Stage-1) dir."}
    )
    model_preset: str | None = field(
        default=None, metadata={"help": "'umt-b16' or 'umt-l16'; default: the small CPU student given below."}
    )
    hidden_size: int = field(default=192, metadata={"help": "Student width (ignored with a preset)."})
    num_hidden_layers: int = field(default=6, metadata={"help": "Student depth (ignored with a preset)."})
    num_attention_heads: int = field(default=3, metadata={"help": "Student heads (ignored with a preset)."})
    intermediate_size: int = field(default=768, metadata={"help": "Student MLP width (ignored with a preset)."})
    patch_size: int = field(default=8, metadata={"help": "Spatial patch size (16 in every official model)."})
    drop_path_rate: float = field(default=0.1, metadata={"help": "Stochastic depth (0.1 B, 0.2 L)."})
    uta_num_layers: int = field(default=3, metadata={"help": "K aligned layers (6 in the official recipe)."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "'sdpa', 'eager' or 'flash_attention_2'."})


@dataclass
class TeacherArguments:
    teacher: str = field(
        default="tiny-random",
        metadata={
            "help": "'clip_b16' / 'clip_l14' (official teachers), an open_clip model name, 'hf:<dir or hub id>' for "
            "a transformers CLIP / SigLIP / DINOv2 tower, or 'tiny-random' (a small random CLIP-shaped ViT for CPU "
            "demos and tests); every name: modeling_umt.teachers.registered_teachers()."
        },
    )
    teacher_pretrained: str | None = field(
        default=None, metadata={"help": "open_clip tag (e.g. 'openai') or a local checkpoint file."}
    )
    teacher_autocast: str = field(default="none", metadata={"help": "'none', 'bf16' or 'fp16' autocast for the teacher."})
    mask_type: str = field(default="attention", metadata={"help": "'attention' (semantic, official), 'random', 'tube'."})
    mask_ratio: float = field(default=0.8, metadata={"help": "Fraction of tokens dropped per frame (official 0.8)."})


@dataclass
class DataArguments:
    train_data: str | None = field(
        default=None,
        metadata={
            "help": "CSV/JSONL table, class-folder directory, webdataset .tar shards (file, glob or dir) or a Hub "
            "dataset id; default: the built-in synthetic videos."
        },
    )
    data_kind: str | None = field(default=None, metadata={"help": "table | folder | webdataset | hub (inferred)."})
    streaming: bool = field(default=False, metadata={"help": "Stream the source (needs --max_steps)."})
    split: str | None = field(default="train", metadata={"help": "Split (column value for tables, split for the Hub)."})
    num_frames: int = field(default=8, metadata={"help": "Frames per clip (official 8)."})
    image_size: int = field(default=64, metadata={"help": "Crop size fed to the student (official 224)."})
    flip: bool = field(default=True, metadata={"help": "Random horizontal flip (official --flip True)."})
    max_bad_fraction: float = field(default=0.2, metadata={"help": "Stop when more clips than this fail to decode."})
    synthetic_num_videos: int = field(default=600, metadata={"help": "Size of the default synthetic dataset."})
    synthetic_size: int = field(default=64, metadata={"help": "Resolution of the synthetic videos."})


@dataclass
class Stage1TrainingArguments(TrainingArguments):
    """TrainingArguments with the official Stage-1 optimiser settings as defaults and CPU-demo sizes."""

    output_dir: str = field(default="outputs/stage1")
    per_device_train_batch_size: int = field(default=8)
    learning_rate: float = field(default=1e-3)
    weight_decay: float = field(default=0.05)
    adam_beta1: float = field(default=0.9)
    adam_beta2: float = field(default=0.95)
    lr_scheduler_type: str = field(default="cosine")
    warmup_steps: float = field(default=0.1)
    max_steps: int = field(default=200)
    logging_steps: int = field(default=10)
    save_steps: float = field(default=100)
    save_total_limit: int | None = field(default=2)
    report_to: None | str | list[str] = field(default="tensorboard")
    remove_unused_columns: bool = field(default=False)
    dataloader_num_workers: int = field(default=1)
    seed: int = field(default=0)
    scale_lr_by_batch: bool = field(
        default=False, metadata={"help": "Official lr rule: learning_rate x global batch / 256."}
    )


def build_teacher(args: TeacherArguments, num_layers: int, image_size: int, patch_size: int) -> UMTTeacher:
    """The frozen teacher named by `args`, returning `num_layers` layers (see `modeling_umt.teachers.build_teacher`)."""
    autocast = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.teacher_autocast]
    return create_teacher(
        args.teacher, args.teacher_pretrained, num_return_layers=num_layers, image_size=image_size,
        patch_size=patch_size, autocast_dtype=autocast,
    )


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
        config = UMTConfig(
            hidden_size=model_args.hidden_size,
            num_hidden_layers=model_args.num_hidden_layers,
            num_attention_heads=model_args.num_attention_heads,
            intermediate_size=model_args.intermediate_size,
            **common,
        )
    config._attn_implementation = model_args.attn_implementation
    return UMTForPreTraining(config)


def build_dataset(data_args: DataArguments, training_args: TrainingArguments):
    source = data_args.train_data
    if source is None:
        with training_args.main_process_first(desc="synthetic dataset"):
            root = ensure_synthetic_dataset(num_videos=data_args.synthetic_num_videos, size=data_args.synthetic_size)
        source = str(root / "metadata.csv")
        logger.info("Using the built-in synthetic dataset at %s", root)
    kwargs = {"streaming": data_args.streaming}
    if data_args.split and (data_args.data_kind in ("table", "hub") or str(source).endswith((".csv", ".jsonl", ".json"))):
        kwargs["split"] = data_args.split  # folders and shards have no split column
    records = load_video_records(source, kind=data_args.data_kind, **kwargs)
    decoder = VideoClipDecoder(
        num_frames=data_args.num_frames,
        sampling="tsn",
        transform=Stage1TrainTransform(data_args.image_size, flip_prob=0.5 if data_args.flip else 0.0),
        stats=DecodeStats(max_bad_fraction=data_args.max_bad_fraction),
        seed=training_args.seed,  # per-sample draws: a resumed run sees exactly the clips an uninterrupted one would
    )
    return decode_videos(records, decoder), decoder


def main(argv: list[str] | None = None) -> str:
    """Parse arguments, train, save; returns the directory of the saved student."""
    model_args, teacher_args, data_args, training_args = parse_script_arguments((ModelArguments, TeacherArguments, DataArguments, Stage1TrainingArguments), argv)
    if training_args.scale_lr_by_batch:
        global_batch = (
            training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * training_args.world_size
        )
        training_args.learning_rate = scale_learning_rate(training_args.learning_rate, global_batch)
        logger.info("Scaled learning rate to %.3g for a global batch of %d", training_args.learning_rate, global_batch)
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("`--streaming` needs `--max_steps` > 0: a stream has no length to count epochs by.")

    set_seed(training_args.seed)  # the student's initialisation is reproducible
    teacher = build_teacher(teacher_args, model_args.uta_num_layers, data_args.image_size, model_args.patch_size)
    model = build_student(model_args, data_args, teacher)
    grid = model.config.grid_size[1] * model.config.grid_size[2]
    if teacher.num_patches != grid:
        raise ValueError(
            f"The teacher sees {teacher.num_patches} patches per frame but the student {grid}; match "
            f"`--image_size`/`--patch_size` to the teacher's grid (e.g. 224/16 for clip_b16)."
        )
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
    trainer.train_resuming()
    final_dir = os.path.join(training_args.output_dir, "model")
    trainer.save_model_atomic(final_dir)
    logger.info("Saved the Stage-1 student to %s (load it with AutoModel.from_pretrained)", final_dir)
    return final_dir


if __name__ == "__main__":
    main()
