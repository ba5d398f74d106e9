#!/usr/bin/env python
"""Open-ended video question answering with UMT: fine-tune and evaluate (official `tasks/vqa.py`).

    python training_scripts/run_qa.py --model_name_or_path outputs/stage2/model --do_train     # synthetic video QA
    python training_scripts/run_qa.py --dataset easy_vqa --do_train                             # real images, T = 1
    python training_scripts/run_qa.py --do_train --train_file train.json --test_file test.json \
        --answer_list answer_list.json --video_root /data/msrvtt/videos --image_size 224

`--model_name_or_path` is a Stage-2 `UMTForVideoTextRetrieval` (the QA model is built from it as official
`setup_model(has_decoder=True)`: the decoder starts as the BERT's fusion layers) or a saved
`UMTForVideoQuestionAnswering`. Data: `--dataset synthetic` (questions about the synthetic clips; held-out test
clips), `--dataset easy_vqa` (64x64 images as 1-frame videos), or `--train_file` / `--test_file` in the official
JSON layout, JSON Lines or CSV (`processors.qa_data.records_from_qa`) with `--answer_list`.

Defaults are the official MSRVTT-QA B/16 recipe (qa_and_detection.md §A): AdamW (0.9, 0.999), lr 2e-5, weight decay
0.02, 8 epochs, cosine to 1 % of the peak after 1 warm-up epoch, batch 32, drop path 0.2, 12 frames (`rand` in
training, `middle` in testing), questions of 25 tokens, answers of 5, k_test 128 (capped at the answer list's size).
Evaluation ranks the answer list (`rank_answers`) and reports exact-match accuracy, overall and per question type,
with the majority-answer baseline of the training answers, into `<output_dir>/qa_metrics.json`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field

from transformers import AutoConfig, AutoModel, BertTokenizer
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import modeling_umt  # noqa: E402,F401  (registers the Auto classes)
from modeling_umt import UMTForVideoMultipleChoice, UMTForVideoQuestionAnswering  # noqa: E402
from modeling_umt.cli import (  # noqa: E402
    ScriptTrainingArguments, SyntheticDataArguments, parse_script_arguments, report_data,
)
from modeling_umt.model_card import update_model_card  # noqa: E402
from modeling_umt.qa_evaluation import evaluate_multiple_choice, evaluate_qa  # noqa: E402
from modeling_umt.trainers import DecoderEpochCallback, UMTVideoQATrainer  # noqa: E402
from processors.sampling import SAMPLING_RULES  # noqa: E402
from processors.decoding import (  # noqa: E402
    DecodeStats, ImageClipDecoder, PreloadedVideoClips, VideoClipDecoder, decode_videos,
)
from processors.fileio import atomic_write_text  # noqa: E402
from processors.qa_data import (  # noqa: E402
    SYNTHETIC_QA_ANSWERS, load_answer_list, majority_answer, records_from_easy_vqa, records_from_qa,
    synthetic_mc_records, synthetic_qa_records,
)
from processors.transforms import EvalTransform, Stage2TrainTransform  # noqa: E402
from processors.collate import VideoCollator  # noqa: E402
from processors.video_qa import VideoQACollator  # noqa: E402

logger = logging.getLogger("run_qa")


@dataclass
class QAArguments(SyntheticDataArguments):
    model_name_or_path: str = field(default="outputs/stage2/model",
                                    metadata={"help": "A Stage-2 UMTForVideoTextRetrieval or a UMTForVideoQuestionAnswering."})
    task: str = field(default="qa", metadata={"help": "'qa' (open-ended) or 'multiple_choice' (evaluate a Stage-2 "
                                                    "model on the synthetic clips with --num_options captions each)."})
    num_options: int = field(default=5, metadata={"help": "Captions per clip for multiple choice (MSRVTT-MC: 5)."})
    dataset: str = field(default="synthetic", metadata={"help": "'synthetic', 'easy_vqa' or 'files' (--train_file ...)."})
    train_file: str | None = field(default=None, metadata={"help": "Training QA annotations (.json/.jsonl/.csv)."})
    test_file: str | None = field(default=None, metadata={"help": "Test QA annotations (.json/.jsonl/.csv)."})
    answer_list: str | None = field(default=None, metadata={"help": "JSON answer list (with --train_file/--test_file)."})
    video_root: str | None = field(default=None, metadata={"help": "Folder relative video paths are joined to."})
    train_limit: int | None = field(default=None, metadata={"help": "Use the first N training questions."})
    test_limit: int | None = field(default=None, metadata={"help": "Evaluate the first N test questions."})
    num_frames: int = field(default=12, metadata={"help": "Frames per clip (official 12; images are 1 frame)."})
    train_sampling: str = field(default="rand", metadata={"help": "Frame rule in training (official 'rand'); any "
                                                                  "processors.sampling rule."})
    test_sampling: str = field(default="middle", metadata={"help": "Frame rule in testing (official 'middle'). A random "
                                                                   "rule ('tsn': one frame uniform over the clip) draws "
                                                                   "per clip from --seed, so evaluation repeats."})
    image_size: int | None = field(default=None, metadata={"help": "Resolution (default: the model's)."})
    max_question_length: int = field(default=25, metadata={"help": "Question tokens (official max_q_len 25)."})
    max_answer_length: int = field(default=5, metadata={"help": "Answer tokens (official max_a_len 5)."})
    k_test: int = field(default=128, metadata={"help": "Candidates re-scored per question (official 128), capped "
                                                       "at the answer list's size."})
    drop_path_rate: float = field(default=0.2, metadata={"help": "Video encoder drop path (official 0.2 for B/16)."})
    augment: bool = field(default=True, metadata={"help": "Random resized crop in training (never flipped: "
                                                          "flips swap left and right)."})
    preload: bool = field(default=True, metadata={"help": "Decode every training clip once and keep it in memory."})
    eval_batch_size: int = field(default=16, metadata={"help": "Questions per evaluation batch."})
    synthetic_num_videos: int = field(default=1000, metadata={"help": "Clips of the default synthetic dataset."})


@dataclass
class QATrainingArguments(ScriptTrainingArguments):
    """Official QA optimiser (MSRVTT-QA, B/16): AdamW (0.9, 0.999), lr 2e-5, weight decay 0.02, 8 epochs, cosine
    to min_lr 1 % after one warm-up epoch, batch 32 per device, no gradient clipping."""

    output_dir: str = field(default="outputs/qa")
    per_device_train_batch_size: int = field(default=32)
    learning_rate: float = field(default=2e-5)
    weight_decay: float = field(default=0.02)
    adam_beta2: float = field(default=0.999)
    num_train_epochs: float = field(default=8)
    warmup_steps: float = field(default=0.125, metadata={"help": "Fraction of training: 1 of 8 epochs."})
    lr_scheduler_type: str = field(default="cosine_with_min_lr")
    lr_scheduler_kwargs: dict | str = field(default_factory=lambda: {"min_lr_rate": 0.01})
    max_grad_norm: float = field(default=0.0)
    save_strategy: str = field(default="no")
    report_to: None | str | list[str] = field(default="none")
    dataloader_num_workers: int = field(default=0)


def load_model(args: QAArguments) -> UMTForVideoQuestionAnswering:
    saved = AutoConfig.from_pretrained(args.model_name_or_path)
    overrides = dict(max_question_length=args.max_question_length, max_answer_length=args.max_answer_length)
    if saved.model_type == "umt_retrieval":
        return UMTForVideoQuestionAnswering.from_retrieval_model(
            args.model_name_or_path, num_frames=args.num_frames, vision_overrides={"drop_path_rate": args.drop_path_rate},
            **overrides,
        )
    if saved.model_type != "umt_qa":
        raise ValueError(f"`--model_name_or_path` holds a {saved.model_type!r} model; expected a Stage-2 retrieval "
                         "model ('umt_retrieval') or a UMTForVideoQuestionAnswering ('umt_qa').")
    saved.vision_config.drop_path_rate = args.drop_path_rate
    for key, value in overrides.items():
        setattr(saved, key, value)
    return AutoModel.from_pretrained(args.model_name_or_path, config=saved)


def load_data(args: QAArguments, training_args: QATrainingArguments):
    """(train records or None, test records, answer list, whether the media are images)."""
    if args.dataset == "synthetic":
        root = args.synthetic_root(training_args)
        train = synthetic_qa_records(root, "train", limit=args.train_limit) if training_args.do_train else None
        return train, synthetic_qa_records(root, "test", limit=args.test_limit), list(SYNTHETIC_QA_ANSWERS), False
    if args.dataset == "easy_vqa":
        train = records_from_easy_vqa("train", args.train_limit)[0] if training_args.do_train else None
        test, answers = records_from_easy_vqa("test", args.test_limit)
        return train, test, answers, True
    if args.dataset != "files":
        raise ValueError(f"`--dataset` must be 'synthetic', 'easy_vqa' or 'files', got {args.dataset!r}.")
    if args.test_file is None or args.answer_list is None:
        raise ValueError("`--dataset files` needs `--test_file` and `--answer_list` (and `--train_file` to train).")
    train = None
    if training_args.do_train:
        if args.train_file is None:
            raise ValueError("`--do_train` with `--dataset files` needs `--train_file`.")
        train = records_from_qa(args.train_file, args.video_root, limit=args.train_limit)
    test = records_from_qa(args.test_file, args.video_root, limit=args.test_limit)
    return train, test, load_answer_list(args.answer_list), False


def clip_decoder(args: QAArguments, seed: int, image_size: int, training: bool, images: bool,
                 stats: DecodeStats | None = None):
    """The training or test decoder: `--train_sampling` / `--test_sampling` frames (images: 1 frame), seeded by
    `seed` so that a random test rule draws the same frames on every run; decoded / skipped clips counted in
    `stats`."""
    transform = (Stage2TrainTransform(image_size, flip_prob=0.0) if training and args.augment
                 else EvalTransform(image_size, keep_aspect_ratio=False))
    if images:
        return ImageClipDecoder(transform, seed=seed if training else None, stats=stats)
    return VideoClipDecoder(num_frames=args.num_frames, sampling=args.train_sampling if training else args.test_sampling,
                            transform=transform, seed=seed, stats=stats)


def run(args: QAArguments, training_args: QATrainingArguments) -> dict:
    """Optionally fine-tune, then evaluate on the test questions; returns the metrics."""
    for name in ("train_sampling", "test_sampling"):
        if getattr(args, name) not in SAMPLING_RULES:
            raise ValueError(f"`--{name}` must be one of {SAMPLING_RULES}, got {getattr(args, name)!r}.")
    model = load_model(args)
    tokenizer = BertTokenizer.from_pretrained(args.model_name_or_path)
    image_size = args.image_size or model.config.vision_config.image_hw[0]
    train, test, answer_list, images = load_data(args, training_args)
    stats = DecodeStats()  # training and test clips: the one "decoded N, skipped M" line at the end

    def decoder(training: bool):
        return clip_decoder(args, training_args.seed, image_size, training, images, stats)

    metrics: dict = {}
    if training_args.do_train:
        train_decoder = decoder(True)
        dataset = PreloadedVideoClips(train, train_decoder) if args.preload else decode_videos(train, train_decoder)
        trainer = UMTVideoQATrainer(
            model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer,
            data_collator=VideoQACollator(tokenizer, args.max_question_length, args.max_answer_length),
            callbacks=[DecoderEpochCallback(train_decoder)],
        )
        final_dir = os.path.join(training_args.output_dir, "model")
        if not trainer.train_resuming(final_dir) and os.path.isdir(final_dir):
            logger.info("The run in %s is finished: evaluating its saved model %s", training_args.output_dir, final_dir)
            model = AutoModel.from_pretrained(final_dir)
        else:  # the folder gets its UMTProcessor (built on the tokenizer) and a model card
            trainer.save_model_atomic(final_dir, card_arguments=(args,), max_text_length=args.max_question_length)
        metrics["majority_answer"] = majority_answer(train)

    test_decoder = decoder(False)
    samples = PreloadedVideoClips(test, test_decoder) if args.preload else decode_videos(test, test_decoder)
    loader = DataLoader(samples, batch_size=args.eval_batch_size,
                        collate_fn=VideoQACollator(tokenizer, args.max_question_length, args.max_answer_length,
                                                   with_labels=False))
    k = min(args.k_test, len(answer_list))
    model.to(training_args.device)
    results, rows = evaluate_qa(model, loader, tokenizer, answer_list, k=k)
    metrics.update(results, k_test=k, num_answers=len(answer_list))
    if "majority_answer" in metrics:
        majority = [row["answer"] == metrics["majority_answer"] for row in rows]
        metrics["majority_baseline_accuracy"] = 100.0 * sum(majority) / len(majority)
    logger.info("QA metrics: %s", json.dumps(metrics))
    os.makedirs(training_args.output_dir, exist_ok=True)
    atomic_write_text(os.path.join(training_args.output_dir, "qa_metrics.json"), json.dumps(metrics, indent=2))
    if training_args.do_train and training_args.should_save:  # the model card gets what it measured
        update_model_card(os.path.join(training_args.output_dir, "model"),
                          {"qa": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}})
    atomic_write_text(os.path.join(training_args.output_dir, "qa_predictions.json"), json.dumps(rows, indent=1))
    report_data(stats, training_args)
    return metrics


def run_multiple_choice(args: QAArguments, training_args: QATrainingArguments) -> dict:
    """Official MSRVTT-MC protocol on the synthetic test clips: 0.7 ITM probability + 0.3 similarity softmax."""
    model = UMTForVideoMultipleChoice.from_pretrained(args.model_name_or_path).to(training_args.device)
    tokenizer = BertTokenizer.from_pretrained(args.model_name_or_path)
    image_size = args.image_size or model.config.vision_config.image_hw[0]
    records = synthetic_mc_records(args.synthetic_root(training_args), "test", args.num_options,
                                   training_args.seed, args.test_limit)
    decoder = VideoClipDecoder(num_frames=args.num_frames, sampling="middle",
                               transform=EvalTransform(image_size, keep_aspect_ratio=False))
    loader = DataLoader(PreloadedVideoClips(records, decoder), batch_size=args.eval_batch_size,
                        collate_fn=VideoCollator())
    metrics, _ = evaluate_multiple_choice(model, loader, tokenizer)
    metrics.update(num_options=args.num_options, chance=100.0 / args.num_options, num_frames=args.num_frames)
    logger.info("Multiple-choice metrics: %s", json.dumps(metrics))
    os.makedirs(training_args.output_dir, exist_ok=True)
    atomic_write_text(os.path.join(training_args.output_dir, "mc_metrics.json"), json.dumps(metrics, indent=2))
    report_data(decoder.stats, training_args)
    return metrics


def main(argv: list[str] | None = None) -> dict:
    args, training_args = parse_script_arguments((QAArguments, QATrainingArguments), argv)
    if args.task == "multiple_choice":
        return run_multiple_choice(args, training_args)
    if args.task != "qa":
        raise ValueError(f"`--task` must be 'qa' or 'multiple_choice', got {args.task!r}.")
    return run(args, training_args)


if __name__ == "__main__":
    main()
