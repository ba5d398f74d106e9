#!/usr/bin/env python
"""Video-text retrieval with UMT: zero-shot evaluation and fine-tuning (official `tasks/retrieval.py`).

    python training_scripts/run_retrieval.py                    # evaluate outputs/stage2/model on held-out synthetic clips
    python training_scripts/run_retrieval.py --model_name_or_path DIR --annotations msrvtt_test.json \
        --video_root /data/msrvtt/videos --num_frames 12 --image_size 224
    python training_scripts/run_retrieval.py --do_train --train_annotations msrvtt_train.json \
        --video_root /data/msrvtt/videos --num_frames 12 --learning_rate 2e-5 --num_train_epochs 5 \
        --annotations msrvtt_test.json --output_dir outputs/ret_msrvtt

Evaluation reports text-to-video (t2v) and video-to-text (v2t) R@1/5/10 and their mean, for ITC alone (the frame-
averaged cosine) and for ITC + ITM (the top-k = 128 candidates of every query re-scored by the matching head, official
protocol), through the `evaluate` metric `modeling_umt/metrics/retrieval.py`. Annotations: the official JSON
(`[{"video": ..., "caption": str or [str, ...]}]`), JSON Lines, or a CSV with video / caption columns (a `split`
column is honoured with `--split`). With no annotations it uses the `test` split of the synthetic captioned videos.

Fine-tuning (`--do_train`) trains VTC + VTM (MLM and UTA off, no teacher, no mask, as the official retrieval
fine-tunes) on (video, caption) pairs where captions of the same video are positives of each other.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field

import torch
from transformers import AutoModel, BertTokenizer, TrainingArguments

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import modeling_umt  # noqa: E402,F401  (registers the Auto classes)
from modeling_umt.cli import (  # noqa: E402
    ScriptTrainingArguments, SyntheticDataArguments, parse_script_arguments, report_data,
)
from modeling_umt.model_card import update_model_card  # noqa: E402
from modeling_umt.retrieval_evaluation import evaluate_retrieval  # noqa: E402
from modeling_umt.trainers import UMTVisionLanguageTrainer  # noqa: E402
from modeling_umt.trainers import DecoderEpochCallback  # noqa: E402
from processors.decoding import DecodeStats, VideoClipDecoder, decode_videos  # noqa: E402
from processors.fileio import atomic_write_text  # noqa: E402
from processors.transforms import EvalTransform, Stage2TrainTransform  # noqa: E402
from processors.video_text import VideoTextCollator, load_retrieval_annotations, pre_text  # noqa: E402

logger = logging.getLogger("run_retrieval")


@dataclass
class RetrievalArguments(SyntheticDataArguments):
    model_name_or_path: str = field(default="outputs/stage2/model", metadata={"help": "A saved UMTForVideoTextRetrieval."})
    annotations: str | None = field(default=None, metadata={"help": "Test annotations (default: synthetic test split)."})
    split: str | None = field(default=None, metadata={"help": "Keep rows whose `split` column equals this."})
    video_root: str | None = field(default=None, metadata={"help": "Folder relative video paths are joined to."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate on the first N videos only."})
    num_frames: int | None = field(default=None, metadata={"help": "Frames per clip (default: the model's; official 12)."})
    image_size: int | None = field(default=None, metadata={"help": "Resolution (default: the model's)."})
    max_text_length: int = field(
        default=16, metadata={"help": "Tokens per caption (official 32-150 per dataset; synthetic captions fit in 12)."}
    )
    k_test: int = field(default=128, metadata={"help": "Candidates re-ranked by ITM per query (official 128)."})
    eval_batch_size: int = field(default=16, metadata={"help": "Videos per feature-extraction batch."})
    itm_batch_size: int = field(default=32, metadata={"help": "Pairs per fusion call during re-ranking."})
    metrics_file: str | None = field(default=None, metadata={"help": "Write the metrics JSON here (default: <output_dir>)."})
    train_annotations: str | None = field(default=None, metadata={"help": "Training annotations (default: synthetic train)."})
    train_split: str | None = field(default=None, metadata={"help": "`split` value of the training rows."})
    flip: bool = field(default=False, metadata={"help": "Random horizontal flip while fine-tuning."})
    synthetic_num_videos: int = field(default=1000, metadata={"help": "Size of the default synthetic dataset."})


@dataclass
class RetrievalTrainingArguments(ScriptTrainingArguments):
    """Official retrieval fine-tuning optimiser (AdamW, lr 1e-5..4e-5, weight decay 0.02, cosine) at CPU-demo sizes;
    nothing saved or reported unless asked."""

    output_dir: str = field(default="outputs/retrieval")
    per_device_train_batch_size: int = field(default=16)
    learning_rate: float = field(default=2e-5)
    weight_decay: float = field(default=0.02)
    max_steps: int = field(default=100)
    save_strategy: str = field(default="no")
    report_to: None | str | list[str] = field(default="none")


def run(args: RetrievalArguments, training_args: RetrievalTrainingArguments) -> dict:
    """Optionally fine-tune, then evaluate; returns {"itc": {...}, "itc+itm": {...}}."""
    model = AutoModel.from_pretrained(args.model_name_or_path)
    tokenizer = BertTokenizer.from_pretrained(args.model_name_or_path)
    vc = model.config.vision_config
    num_frames = args.num_frames or vc.num_frames
    image_size = args.image_size or vc.image_hw[0]

    if training_args.do_train:  # TrainingArguments' --do_train: fine-tune (VTC + VTM) before evaluating
        model.config.mlm_loss_weight = model.config.uta_loss_weight = 0.0
        source, split = args.train_annotations, args.train_split
        if source is None:
            source, split = str(args.synthetic_root() / "metadata.csv"), split or "train"
        train = load_retrieval_annotations(source, video_root=args.video_root, split=split)
        transform = Stage2TrainTransform(image_size, flip_prob=0.5 if args.flip else 0.0)
        decoder = VideoClipDecoder(num_frames=num_frames, sampling="rand", transform=transform, stats=DecodeStats(),
                                   seed=training_args.seed)  # fmt: skip
        trainer = UMTVisionLanguageTrainer(
            model=model, args=training_args, train_dataset=decode_videos(train.records(), decoder),
            data_collator=VideoTextCollator(tokenizer, max_length=args.max_text_length), teacher=None,
            processing_class=tokenizer,  # the final folder gets a UMTProcessor built on it
            callbacks=[DecoderEpochCallback(decoder)],
        )
        final_dir = os.path.join(training_args.output_dir, "model")
        if not trainer.train_resuming(final_dir) and os.path.isdir(final_dir):
            logger.info("The fine-tuning in %s is finished: evaluating its saved model %s", training_args.output_dir,
                        final_dir)
            model = AutoModel.from_pretrained(final_dir)
        else:  # every process joins the save (it has barriers); the main one writes, processor and card inside the folder
            trainer.save_model_atomic(final_dir, card_arguments=(args,), max_text_length=args.max_text_length)

    source, split = args.annotations, args.split
    if source is None:
        source, split = str(args.synthetic_root() / "metadata.csv"), split or "test"
    test = load_retrieval_annotations(source, video_root=args.video_root, split=split, limit=args.limit)
    logger.info("Evaluating on %d videos / %d captions from %s", len(test.videos), len(test.texts), source)
    decoder = VideoClipDecoder(
        num_frames=num_frames, sampling="middle", transform=EvalTransform(image_size, keep_aspect_ratio=False)
    )

    def decode(video):  # an exact evaluation skips nothing: a video that fails to decode stops it, named
        clip = decoder.decode(video)
        decoder.stats.record_success()
        return clip

    def video_batches():
        for s in range(0, len(test.videos), args.eval_batch_size):
            yield torch.stack([decode(v) for v in test.videos[s : s + args.eval_batch_size]])

    text = tokenizer(
        [pre_text(t) for t in test.texts], padding="max_length", truncation=True,
        max_length=args.max_text_length, return_tensors="pt",
    )
    results, _ = evaluate_retrieval(
        model, video_batches(), text["input_ids"], text["attention_mask"], test.txt2video, test.video2txt,
        k=args.k_test, itm_batch_size=args.itm_batch_size,
    )
    # A random ranking finds a text's one video with probability 1/V, and a video's c captions among T with c/T
    # (1/V on average over the videos).
    chance = {"t2v_r1": 100.0 / len(test.videos), "v2t_r1": 100.0 / len(test.videos)}
    results["chance"] = chance
    results["num_videos"], results["num_texts"] = len(test.videos), len(test.texts)
    for name in ("itc", "itc+itm"):
        r = results[name]
        logger.info(
            "%-8s t2v R@1 %.1f R@5 %.1f R@10 %.1f | v2t R@1 %.1f R@5 %.1f R@10 %.1f | mean %.1f", name,
            r["t2v_r1"], r["t2v_r5"], r["t2v_r10"], r["v2t_r1"], r["v2t_r5"], r["v2t_r10"], r["r_mean"],
        )
    logger.info("chance R@1: t2v %.1f, v2t %.1f", chance["t2v_r1"], chance["v2t_r1"])
    path = args.metrics_file or os.path.join(training_args.output_dir, "retrieval_metrics.json")
    atomic_write_text(path, json.dumps(results, indent=2))  # a finished file or none at all
    if training_args.do_train and training_args.should_save:  # the fine-tuned model's card gets what it measured
        update_model_card(os.path.join(training_args.output_dir, "model"),
                          {"retrieval": {k: results[k] for k in ("itc", "itc+itm")}})
    logger.info("Wrote %s", path)
    report_data(decoder.stats, training_args)
    return results


def main(argv: list[str] | None = None) -> dict:
    args, training_args = parse_script_arguments((RetrievalArguments, RetrievalTrainingArguments), argv)
    return run(args, training_args)


if __name__ == "__main__":
    main()
