#!/usr/bin/env python
"""Fine-tune UMT for video classification with the official recipe (layer-wise lr decay, mixup / cutmix / label
smoothing, RandAugment, random erasing, drop path, multi-view testing).

    python training_scripts/run_finetune.py                                   # CPU demo on the synthetic videos
    python training_scripts/run_finetune.py --model_name_or_path outputs/stage1/model     # from a run_stage1 student
    python training_scripts/run_finetune.py config.yaml                       # every argument from one file
    torchrun --nproc_per_node 2 training_scripts/run_finetune.py --use_cpu \\
        --deepspeed training_scripts/configs/ds_zero2.json                    # DeepSpeed ZeRO-2 (CPU: gloo)
    python training_scripts/run_finetune.py --model_name_or_path converted/k710_b16 \\
        --label_subset k400_labels.txt --label_map k400_labels.txt --train_data k400_train.csv ...  # K710 -> K400
    python training_scripts/run_finetune.py --use_peft lora                   # LoRA on query/value + head

The official recipes (K710 / K400 / SSv2, B/16 and L/16) map onto these arguments as docs/finetuning.md lists:
e.g. K710 B/16 is `--learning_rate 2e-4 --scale_lr_by_batch --num_train_epochs 35 --max_steps -1 --warmup_steps
0.057 --layer_decay 0.75 --drop_path_rate 0.1 --test_num_clips 4 --test_num_crops 3 --fp16 --deepspeed ds_zero2.json`.

Outputs under `--output_dir`: checkpoints, `model/` (the fine-tuned `UMTForVideoClassification` and its
`UMTVideoProcessor`, so `pipeline("video-classification", model=".../model")` works), with `--use_peft lora` also
`adapter/` (the LoRA adapter; `model/` then holds the merged model), and `test_results.json` (multi-view top-1 / top-5).

The logic lives in `modeling_umt` and `processors`; this file parses arguments and wires objects (`--frame_level`
trains `modeling_umt.UMTFrameLevelClassifier`, the frame-level baseline of the evidence run). A
`--model_name_or_path` that is a saved CLIP vision tower (`CLIPVisionModelWithProjection`, e.g. the main job's image
teacher) is fine-tuned the same way as `modeling_umt.TeacherFrameLevelClassifier`: the teacher as a baseline.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field

import torch
import transformers
from transformers import TrainingArguments

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modeling_umt import UMTConfig, UMTForVideoClassification, UMTFrameLevelClassifier  # noqa: E402
from modeling_umt.cli import (  # noqa: E402
    BatchScaledTrainingArguments, StudentShapeArguments, VideoDataArguments, has_split_column, load_split_records,
    parse_script_arguments, report_data, scale_learning_rate_by_batch,
)
from modeling_umt.loading import load_video_classifier  # noqa: E402
from modeling_umt.publishing import complete_model_folder  # noqa: E402
from modeling_umt.teacher_classifier import TeacherFrameLevelClassifier, is_image_tower_folder  # noqa: E402
from modeling_umt.trainers import (  # noqa: E402
    DecoderEpochCallback,
    UMTFineTuningTrainer,
    top_k_compute_metrics,
)
from processors.collate import VideoCollator  # noqa: E402
from processors.decoding import (  # noqa: E402
    DecodeStats,
    MultiViewClipDecoder,
    VideoClipDecoder,
    decode_videos,
)
from processors.finetune_transforms import FinetuneTrainTransform  # noqa: E402
from processors.fileio import publish_directory, staging_path  # noqa: E402
from processors.labels import read_label_file  # noqa: E402
from processors.rows import RowCheck  # noqa: E402
from processors.video_processing_umt import UMTVideoProcessor  # noqa: E402

logger = logging.getLogger("run_finetune")


@dataclass
class ModelArguments(StudentShapeArguments):
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A run_stage1 output (UMTForPreTraining; its final norm is dropped), a UMTVideoModel, or a "
            "UMTForVideoClassification (e.g. a converted official fine-tuned model), or a CLIP image tower "
            "(CLIPVisionModelWithProjection folder, e.g. the image teacher): a frame-level classifier over its image "
            "embeddings. Default: random init."
        },
    )
    model_preset: str | None = field(default=None, metadata={"help": "'umt-b16' / 'umt-l16' for a random init."})
    patch_size: int = field(default=8, metadata={"help": "Random-init patch size (16 in every official model)."})
    drop_path_rate: float = field(default=0.1, metadata={"help": "Stochastic depth (official 0.1 B, 0.2 L)."})
    classifier_dropout: float = field(default=0.0, metadata={"help": "Dropout before the head (official fc_drop)."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "'sdpa', 'eager' or 'flash_attention_2'."})
    label_subset: str | None = field(
        default=None,
        metadata={
            "help": "Head transfer: keep these rows of a classifier checkpoint's head, in order -- a label-map file "
            "or a comma-separated list of class names / ids (K710 -> K400: the first 400 rows)."
        },
    )
    frame_level: bool = field(
        default=False,
        metadata={"help": "Frame-level baseline: encode every frame alone, average the features, classify."},
    )
    use_peft: str | None = field(default=None, metadata={"help": "'lora': LoRA on the attention projections."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(default="query,value", metadata={"help": "Comma-separated module names."})


@dataclass
class DataArguments(VideoDataArguments):
    eval_data: str | None = field(
        default=None,
        metadata={"help": "Validation/test source (split by its 'split' column if it has one, else used whole); "
                  "default: the training table's other splits, none when it has no 'split' column."},
    )
    data_kind: str | None = field(default=None, metadata={"help": "table | folder | webdataset | hub (inferred)."})
    train_split: str | None = field(default="train", metadata={"help": "Training split (tables / Hub)."})
    eval_split: str | None = field(default="val", metadata={"help": "Validation split, evaluated during training."})
    test_split: str | None = field(default="test", metadata={"help": "Test split, evaluated multi-view at the end."})
    label_map: str | None = field(
        default=None,
        metadata={"help": "Class names by id: JSON list / {name: id} / {id: name}, or a text file, one per line. "
                  "Default: the class folders' names, or inferred from the training table's 'label' column (class "
                  "names: sorted; ids: 0..K-1), printed and saved as the model's id2label."},
    )
    num_frames: int = field(default=8, metadata={"help": "Frames per clip (official 8 or 16)."})
    short_side_size: int | None = field(default=None, metadata={"help": "Eval resize of the short side (= crop)."})
    rand_augment: str = field(default="rand-m7-n4-mstd0.5-inc1", metadata={"help": "RandAugment policy or 'none'."})
    reprob: float = field(default=0.25, metadata={"help": "Random erasing probability."})
    min_crop_area: float = field(default=0.08, metadata={"help": "Random resized crop: smallest area fraction."})
    flip: bool | None = field(
        default=None,
        metadata={
            "help": "Horizontal flip p=0.5 (official, Kinetics). Default: on, except on the built-in synthetic videos, "
            "whose classes name directions (left/right, clockwise) as SSv2's do -- pass --flip False for such data."
        },
    )
    eval_num_clips: int = field(default=1, metadata={"help": "Temporal views during validation."})
    eval_num_crops: int = field(default=1, metadata={"help": "Spatial views during validation."})
    test_num_clips: int = field(default=2, metadata={"help": "Temporal views for the final test (official 4)."})
    test_num_crops: int = field(default=3, metadata={"help": "Spatial views for the final test (official 3)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N videos only."})


@dataclass
class FinetuneTrainingArguments(BatchScaledTrainingArguments):
    """The official fine-tuning optimiser settings as defaults, at CPU-demo sizes."""

    output_dir: str = field(default="outputs/finetune")
    per_device_train_batch_size: int = field(default=8)
    per_device_eval_batch_size: int = field(default=8)
    learning_rate: float = field(default=1e-3)
    weight_decay: float = field(default=0.05)
    adam_beta1: float = field(default=0.9)
    adam_beta2: float = field(default=0.999)
    lr_scheduler_type: str = field(default="cosine_with_min_lr")
    lr_scheduler_kwargs: dict | str | None = field(default_factory=lambda: {"min_lr": 1e-6})
    max_steps: int = field(default=150)
    eval_strategy: str = field(default="steps")
    eval_steps: float | None = field(default=50)
    save_steps: float = field(default=50)
    save_total_limit: int | None = field(default=2)
    label_smoothing_factor: float = field(default=0.1)
    layer_decay: float = field(default=0.75, metadata={"help": "Layer-wise lr decay (official 0.75 B, 0.85 L; 1 = off)."})
    mixup: float = field(default=0.8, metadata={"help": "Mixup alpha (0 = off)."})
    cutmix: float = field(default=1.0, metadata={"help": "CutMix alpha (0 = off)."})
    mixup_prob: float = field(default=1.0, metadata={"help": "Probability of mixing a batch."})
    mixup_switch_prob: float = field(default=0.5, metadata={"help": "Probability of CutMix when both are on."})


def given_labels(data_args: DataArguments, synthetic_root) -> list[str] | None:
    """Class names by id from --label_map, else the synthetic dataset's own; None: the training source's own (class
    folders) or inferred from its table by `RowCheck` (sorted names, or ids 0..K-1)."""
    if data_args.label_map:
        return read_label_file(data_args.label_map)
    if synthetic_root is not None:
        return json.loads((synthetic_root / "info.json").read_text())["classes"]
    return None


def build_teacher_classifier(model_args: ModelArguments, data_args: DataArguments, id2label: dict[int, str]):
    """The image tower in `--model_name_or_path` as a `TeacherFrameLevelClassifier` (frame-level by construction)."""
    for flag, value in (("--label_subset", model_args.label_subset), ("--use_peft", model_args.use_peft)):
        if value:
            raise ValueError(f"{flag} {value!r} is not supported for an image tower ({model_args.model_name_or_path} "
                             "is a CLIP vision model): its head is new and its attention is CLIP's; drop the flag")
    logger.info("Image tower %s: frame-level classifier over its image embeddings (no stochastic depth in the "
                "tower: --drop_path_rate %s unused)", model_args.model_name_or_path, model_args.drop_path_rate)
    return TeacherFrameLevelClassifier.from_teacher(
        model_args.model_name_or_path, id2label, num_frames=data_args.num_frames, image_size=data_args.image_size,
        classifier_dropout=model_args.classifier_dropout, attn_implementation=model_args.attn_implementation,
    )  # fmt: skip


def build_model(model_args: ModelArguments, data_args: DataArguments, id2label: dict[int, str]):
    if model_args.model_name_or_path and is_image_tower_folder(model_args.model_name_or_path):
        return build_teacher_classifier(model_args, data_args, id2label)
    overrides = dict(drop_path_rate=model_args.drop_path_rate, classifier_dropout=model_args.classifier_dropout)
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled() and (model_args.frame_level or model_args.label_subset):
        raise ValueError("--frame_level and --label_subset edit loaded weights, which ZeRO-3 partitions: use ZeRO-2")
    if model_args.model_name_or_path:
        subset = None
        if model_args.label_subset:
            spec = model_args.label_subset
            subset = read_label_file(spec) if os.path.isfile(spec) else [s.strip() for s in spec.split(",") if s.strip()]
        model = load_video_classifier(model_args.model_name_or_path, id2label=id2label, label_subset=subset, **overrides)
        if model.config.num_frames != data_args.num_frames or model.config.image_hw != (data_args.image_size,) * 2:
            raise ValueError(
                f"the checkpoint is built for {model.config.num_frames} frames of {model.config.image_hw} but "
                f"--num_frames {data_args.num_frames} --image_size {data_args.image_size} were given; match them"
            )
    else:
        common = dict(
            num_frames=data_args.num_frames, image_size=data_args.image_size, tubelet_size=1, num_labels=len(id2label),
            id2label=id2label, label2id={v: k for k, v in id2label.items()}, **overrides,
        )  # fmt: skip
        if model_args.model_preset:
            config = UMTConfig.from_preset(model_args.model_preset, **common)
        else:
            config = UMTConfig(**model_args.shape(), patch_size=model_args.patch_size, **common)
        model = UMTForVideoClassification(config)
    model.config._attn_implementation = model_args.attn_implementation
    if model_args.frame_level:
        state = model.state_dict()
        model = UMTFrameLevelClassifier(model.config)
        model.load_state_dict(state)
    return model


def apply_lora(model: UMTForVideoClassification, model_args: ModelArguments):
    """Wrap `model` in a peft LoRA model: adapters on the attention projections, head and fc_norm fully trained."""
    from peft import LoraConfig, get_peft_model

    if model_args.use_peft != "lora":
        raise ValueError(f"--use_peft must be 'lora', got {model_args.use_peft!r}")
    config = LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=[m.strip() for m in model_args.lora_target_modules.split(",") if m.strip()],
        modules_to_save=["classifier", "pooler.norm"],
    )
    model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("LoRA: %d of %d parameters trainable (%.2f%%)", trainable, total, 100 * trainable / total)
    return model


def build_datasets(data_args: DataArguments, training_args: TrainingArguments, processor: UMTVideoProcessor):
    """(train, validation, test, label names, train decoder); validation / test are None where there is no data."""
    source, synthetic_root = data_args.train_source(training_args)
    stats = DecodeStats(max_bad_fraction=data_args.max_bad_fraction)
    check = RowCheck(label=True, label_names=given_labels(data_args, synthetic_root), strict=data_args.strict_data,
                     stats=stats)
    train_records = load_split_records(source, data_args.data_kind, data_args.train_split, data_args.streaming, check)
    names = check.label_names
    logger.info("Label map (%d classes, saved as the model's id2label): %s", len(names), dict(enumerate(names)))
    transform = FinetuneTrainTransform(
        data_args.image_size,
        rand_augment=data_args.rand_augment,
        scale=(data_args.min_crop_area, 1.0),
        flip_prob=0.5 if (data_args.flip if data_args.flip is not None else synthetic_root is None) else 0.0,
        erase_prob=data_args.reprob,
    )
    train_decoder = VideoClipDecoder(
        data_args.num_frames, sampling="sparse_train", transform=transform, stats=stats, seed=training_args.seed,
        **data_args.url_options(),
    )
    train = data_args.training_dataset(train_records, train_decoder)

    def evaluation_set(split: str | None, clips: int, crops: int):
        if not split or (data_args.eval_data is None and not has_split_column(source, data_args.data_kind)):
            return None  # a training source without splits: every row trains
        eval_check = RowCheck(label=True, label_names=names, strict=data_args.strict_data, stats=stats)
        records = load_split_records(data_args.eval_data or source, data_args.data_kind, split, check=eval_check)
        if data_args.max_eval_samples is not None and hasattr(records, "select"):
            records = records.select(range(min(len(records), data_args.max_eval_samples)))
        if hasattr(records, "__len__") and len(records) == 0:
            return None
        decoder = MultiViewClipDecoder(processor, data_args.num_frames, clips, crops, stats=stats,
                                       **data_args.url_options())
        return decode_videos(records, decoder)

    validation = evaluation_set(data_args.eval_split, data_args.eval_num_clips, data_args.eval_num_crops)
    test = evaluation_set(data_args.test_split, data_args.test_num_clips, data_args.test_num_crops)
    return train, validation, test, names, train_decoder


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, fine-tune, test, save; returns {"model_dir", "test": test metrics or None}."""
    model_args, data_args, training_args = parse_script_arguments(
        (ModelArguments, DataArguments, FinetuneTrainingArguments), argv
    )
    # Set up the process group now: ZeRO-3 partitions weights while `from_pretrained` loads them, and needs the world.
    logger.info("Process %d of %d on %s", training_args.process_index, training_args.world_size, training_args.device)
    if training_args.deepspeed and torch.distributed.is_initialized():
        import deepspeed  # its communication layer too (on CPU the Trainer sets it up only later, after loading)

        deepspeed.init_distributed(dist_backend=torch.distributed.get_backend())
    scale_learning_rate_by_batch(training_args)
    data_args.check_streaming(training_args)

    short_side = data_args.short_side_size or data_args.image_size
    processor = UMTVideoProcessor(
        size={"shortest_edge": short_side},
        crop_size={"height": data_args.image_size, "width": data_args.image_size},
        num_frames=data_args.num_frames,
    )
    train, validation, test, names, train_decoder = build_datasets(data_args, training_args, processor)
    id2label = dict(enumerate(names))
    transformers.set_seed(training_args.seed)  # the fresh head (and a random init) is reproducible
    model = build_model(model_args, data_args, id2label)
    if model_args.use_peft:
        model = apply_lora(model, model_args)
    if validation is None and training_args.eval_strategy != "no":
        logger.info("No validation data: evaluation during training is off.")
        training_args.eval_strategy = transformers.IntervalStrategy.NO

    trainer = UMTFineTuningTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=VideoCollator(required=("label",)),
        processing_class=processor,  # saved in checkpoints and the final folder
        compute_metrics=top_k_compute_metrics((1, 5)),
        callbacks=[DecoderEpochCallback(train_decoder)],
        layer_decay=training_args.layer_decay,
        mixup_alpha=training_args.mixup,
        cutmix_alpha=training_args.cutmix,
        mixup_prob=training_args.mixup_prob,
        mixup_switch_prob=training_args.mixup_switch_prob,
        label_smoothing=training_args.label_smoothing_factor,
    )
    final_dir = os.path.join(training_args.output_dir, "model")
    if not trainer.train_resuming(final_dir) and os.path.isdir(final_dir):
        logger.info("The run in %s is finished and %s is saved: nothing to do", training_args.output_dir, final_dir)
        saved = os.path.join(training_args.output_dir, "test_results.json")
        test_metrics = None
        if os.path.isfile(saved):
            with open(saved) as f:
                test_metrics = json.load(f)
        report_data(train_decoder.stats, training_args)
        return {"model_dir": final_dir, "test": test_metrics}

    test_metrics = None
    if test is not None:
        test_metrics = trainer.evaluate(test, metric_key_prefix="test")
        test_metrics["test_num_views"] = data_args.test_num_clips * data_args.test_num_crops
        trainer.log_metrics("test", test_metrics)
        trainer.save_metrics("test", test_metrics)

    if model_args.use_peft:
        adapter_dir = os.path.join(training_args.output_dir, "adapter")
        trainer.save_model_atomic(adapter_dir, card_arguments=(model_args, data_args))  # the adapter + head only
        if training_args.should_save:
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.config.architectures = ["UMTForVideoClassification"]
            staging = staging_path(final_dir)
            merged.save_pretrained(staging)
            complete_model_folder(staging, merged, processor, training_arguments=training_args,
                                  script_arguments=(model_args, data_args), steps=trainer.state.global_step,
                                  metrics=test_metrics)  # fmt: skip
            publish_directory(staging, final_dir)
        logger.info("Saved the LoRA adapter to %s and the merged model to %s", adapter_dir, final_dir)
    else:
        trainer.save_model_atomic(final_dir, card_arguments=(model_args, data_args))
    trainer.accelerator.wait_for_everyone()
    logger.info("Saved the fine-tuned model and its video processor to %s", final_dir)
    report_data(train_decoder.stats, training_args)
    return {"model_dir": final_dir, "test": test_metrics}


if __name__ == "__main__":
    main()
