#!/usr/bin/env python
"""Evidence on the synthetic temporal dataset: does the spatiotemporal student learn what a frame-level model cannot?

    python training_scripts/run_temporal_evidence.py                      # the table of docs/finetuning.md (CPU)
    python training_scripts/run_temporal_evidence.py --finetune_steps 500 # a quicker, noisier version

The synthetic classes come in time-reversed pairs (moving left / right, growing / shrinking, rotating clockwise /
counter-clockwise, appearing / disappearing, ...): the frames of a clip and of its partner are the same set, so any
model that averages per-frame features is at most 50 % top-1 on them. Three models, same architecture, same data,
same fine-tuning recipe and number of steps:

    (a) UMT fine-tuned from a Stage-1 checkpoint made by run_stage1.py (here distilled from the small random
        CLIP-shaped teacher, since no CLIP weights can be downloaded on this machine);
    (b) UMT fine-tuned from random initialisation (the same config, fresh weights);
    (c) the frame-level baseline: the same Stage-1 weights, but every frame encoded on its own and the per-frame
        features averaged before fc_norm and the head (`run_finetune.py --frame_level`).

Reported on the test split with multi-view testing (softmax averaged over the clips): top-1, top-5, how often a
video is predicted as its time-reversed partner, and how often the top-1 changes when the test clip is played
backwards (0 % for an order-blind model, by construction). Writes <output_dir>/results.json and evidence.md.

Stage 1 and the three fine-tunings run run_stage1.py / run_finetune.py as subprocesses; everything runs on one CPU
thread by default (`--num_threads`, passed on as OMP_NUM_THREADS): on a shared 2-core machine more threads slow every
step down (oversubscription), one thread keeps the run to minutes.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from modeling_umt import UMTConfig, UMTForPreTraining, UMTForVideoClassification, UMTFrameLevelClassifier  # noqa: E402
from modeling_umt.cli import parse_script_arguments, report_data, run_script  # noqa: E402
from modeling_umt.publishing import complete_model_folder  # noqa: E402
from modeling_umt.trainers import UMTFineTuningTrainer  # noqa: E402
from processors.datasets import load_video_records  # noqa: E402
from processors.decoding import DecodeStats  # noqa: E402
from processors.synthetic import CLASS_NAMES, ensure_synthetic_dataset  # noqa: E402
from processors.video_processing_umt import UMTVideoProcessor  # noqa: E402

logger = logging.getLogger("run_temporal_evidence")


@dataclass
class EvidenceArguments:
    output_dir: str = field(default="outputs/temporal_evidence")
    num_videos: int = field(default=4000, metadata={"help": "Synthetic clips (80/10/10 train/val/test)."})
    video_size: int = field(default=32, metadata={"help": "Resolution of the synthetic videos."})
    num_frames: int = field(default=4, metadata={"help": "Frames per clip, sampled from the 16 of each video."})
    image_size: int = field(default=16, metadata={"help": "Model input size."})
    patch_size: int = field(default=4, metadata={"help": "Patch size (a 4 x 4 token grid per frame)."})
    hidden_size: int = field(default=64)
    num_hidden_layers: int = field(default=3)
    num_attention_heads: int = field(default=4)
    intermediate_size: int = field(default=256)
    stage1_steps: int = field(default=600, metadata={"help": "Stage-1 distillation steps for (a) and (c)."})
    stage1_learning_rate: float = field(default=1.5e-3)
    finetune_steps: int = field(default=2000, metadata={"help": "Fine-tuning steps, the same for (a), (b), (c)."})
    learning_rate: float = field(default=2e-3)
    batch_size: int = field(default=32)
    test_num_clips: int = field(default=2, metadata={"help": "Temporal test views per video."})
    extra_finetune_args: str = field(
        default="--rand_augment none --reprob 0 --min_crop_area 0.5 --mixup 0 --cutmix 0 --drop_path_rate 0.0",
        metadata={"help": "Recipe arguments for run_finetune.py, shared by (a), (b) and (c)."},
    )
    seed: int = field(default=0)
    num_threads: int = field(default=1, metadata={"help": "torch CPU threads (1 avoids oversubscription)."})


def _time(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _common_data_args(args: EvidenceArguments) -> list[str]:
    return [
        "--synthetic_num_videos", str(args.num_videos), "--synthetic_size", str(args.video_size),
        "--num_frames", str(args.num_frames), "--image_size", str(args.image_size),
        "--per_device_train_batch_size", str(args.batch_size), "--dataloader_num_workers", "0",
        "--report_to", "none", "--use_cpu", "--disable_tqdm", "True", "--seed", str(args.seed),
    ]  # fmt: skip


def _run(args: EvidenceArguments, script: str, argv: list[str]) -> None:
    """One training script of this folder in a subprocess, on `args.num_threads` CPU threads."""
    run_script(os.path.join(HERE, script), argv, env={"OMP_NUM_THREADS": str(args.num_threads)})


def stage1(args: EvidenceArguments, out: Path) -> str:
    """run_stage1.py with the small random teacher; returns the saved student directory."""
    model_dir = out / "stage1" / "model"
    if (model_dir / "config.json").is_file():
        return str(model_dir)
    _run(
        args, "run_stage1.py",
        [*_common_data_args(args), "--output_dir", str(out / "stage1"), "--max_steps", str(args.stage1_steps),
         "--hidden_size", str(args.hidden_size), "--num_hidden_layers", str(args.num_hidden_layers),
         "--num_attention_heads", str(args.num_attention_heads), "--intermediate_size", str(args.intermediate_size),
         "--patch_size", str(args.patch_size), "--uta_num_layers", str(min(2, args.num_hidden_layers)),
         "--learning_rate", str(args.stage1_learning_rate), "--warmup_steps", "0.1", "--logging_steps", "50",
         "--save_strategy", "no"],  # fmt: skip
    )
    return str(model_dir)


def random_init(args: EvidenceArguments, stage1_dir: str, out: Path) -> str:
    """The Stage-1 config with fresh weights (what Stage 1 starts from), saved for (b)."""
    model_dir = out / "random_init"
    if not (model_dir / "config.json").is_file():
        torch.manual_seed(args.seed)
        model = UMTForPreTraining(UMTConfig.from_pretrained(stage1_dir))
        model.save_pretrained(model_dir)
        complete_model_folder(model_dir, model, origin=f"Random weights of the Stage-1 config of {stage1_dir} "
                              f"(seed {args.seed}): the untrained start of the evidence experiment's model (b).")
    return str(model_dir)


def finetune(args: EvidenceArguments, init_dir: str, out: Path, frame_level: bool) -> str:
    model_dir = out / "model"
    if (model_dir / "config.json").is_file():
        return str(model_dir)
    argv = [
        *_common_data_args(args), "--model_name_or_path", init_dir, "--output_dir", str(out),
        "--max_steps", str(args.finetune_steps), "--learning_rate", str(args.learning_rate), "--warmup_steps", "0.1",
        "--logging_steps", "100", "--eval_strategy", "no", "--save_strategy", "no", "--test_split", "",
        "--preload_videos", "True", *args.extra_finetune_args.split(),
    ]  # fmt: skip
    if frame_level:
        argv.append("--frame_level")
    _run(args, "run_finetune.py", argv)
    return str(model_dir)


def load_test_views(args: EvidenceArguments, root: Path, stats: DecodeStats) -> tuple[torch.Tensor, torch.Tensor]:
    """Every test video as multi-view pixel_values (N, V, T, 3, S, S) with labels (N,), each counted in `stats` (an
    exact test skips nothing: a video that fails to decode stops the run, named)."""
    processor = UMTVideoProcessor(
        size={"shortest_edge": args.image_size}, crop_size={"height": args.image_size, "width": args.image_size},
        num_frames=args.num_frames,
    )  # fmt: skip
    records = load_video_records(str(root / "metadata.csv"), split="test")
    views = []
    for row in records:
        views.append(processor(row["video"], do_sample_frames=True, num_temporal_clips=args.test_num_clips,
                               return_tensors="pt")["pixel_values"])
        stats.record_success()
    return torch.stack(views), torch.tensor(records["label"])


@torch.no_grad()
def evaluate_model(model, views: torch.Tensor, labels: torch.Tensor, batch: int = 64) -> dict:
    """Multi-view top-1 / top-5, partner confusion and order sensitivity (top-1 change under time reversal)."""
    model.eval()

    def probs(x):
        return torch.cat([UMTFineTuningTrainer.predict_probabilities(model, x[i : i + batch]) for i in range(0, len(x), batch)])

    forward, backward = probs(views), probs(views.flip(2))  # flip the time axis of every view
    top5 = forward.topk(min(5, forward.shape[1]), dim=1).indices
    pred, pred_reversed = forward.argmax(1), backward.argmax(1)
    partner = labels ^ 1  # classes come in time-reversed pairs (0, 1), (2, 3), ...
    return {
        "top1": float((pred == labels).float().mean()),
        "top5": float((top5 == labels[:, None]).any(1).float().mean()),
        "predicted_as_reversed_partner": float((pred == partner).float().mean()),
        "top1_changes_when_reversed": float((pred != pred_reversed).float().mean()),
        "reversed_clip_predicted_as_partner": float((pred_reversed == partner).float().mean()),
    }


def markdown_table(results: dict) -> str:
    rows = [
        "| model | init | test top-1 | test top-5 | right pair, either direction | predicted as the time-reversed "
        "partner | top-1 changes when played backwards | fine-tune time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, label, init in (
        ("a", "(a) UMT (spatiotemporal)", "Stage-1 checkpoint (run_stage1.py)"),
        ("b", "(b) UMT (spatiotemporal)", "random"),
        ("c", "(c) frame-level: per-frame features averaged", "Stage-1 checkpoint (run_stage1.py)"),
    ):
        r = results[key]
        rows.append(
            f"| {label} | {init} | {100 * r['top1']:.1f} % | {100 * r['top5']:.1f} % | "
            f"{100 * (r['top1'] + r['predicted_as_reversed_partner']):.1f} % | "
            f"{100 * r['predicted_as_reversed_partner']:.1f} % | {100 * r['top1_changes_when_reversed']:.1f} % | "
            f"{r['seconds']:.0f} s |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    (args,) = parse_script_arguments((EvidenceArguments,), argv)
    torch.set_num_threads(args.num_threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    root, data_seconds = _time(lambda: ensure_synthetic_dataset(num_videos=args.num_videos, size=args.video_size))
    stage1_dir, stage1_seconds = _time(lambda: stage1(args, out))
    random_dir = random_init(args, stage1_dir, out)
    stats = DecodeStats()
    views, labels = load_test_views(args, root, stats)
    logger.info("Test set: %d videos x %d views", *views.shape[:2])

    results = {}
    for key, init, frame_level in (("a", stage1_dir, False), ("b", random_dir, False), ("c", stage1_dir, True)):
        model_dir, seconds = _time(lambda: finetune(args, init, out / f"finetune_{key}", frame_level))
        cls = UMTFrameLevelClassifier if frame_level else UMTForVideoClassification
        results[key] = {**evaluate_model(cls.from_pretrained(model_dir), views, labels), "seconds": seconds}
        logger.info("(%s) %s", key, results[key])

    total = time.perf_counter() - start
    table = markdown_table(results)
    summary = (
        f"{table}\n\n{len(labels)} test videos, {args.test_num_clips} clips each; {len(CLASS_NAMES)} classes in 5 "
        f"time-reversed pairs. Stage 1: {args.stage1_steps} steps ({stage1_seconds:.0f} s); fine-tuning: "
        f"{args.finetune_steps} steps of {args.batch_size} for each model; data generation {data_seconds:.0f} s; "
        f"total {total / 60:.1f} min.\n"
    )
    (out / "results.json").write_text(json.dumps({"args": asdict(args), "results": results, "total_seconds": total}, indent=2))
    (out / "evidence.md").write_text(summary)
    print(summary)
    report_data(stats)  # the fine-tuning and Stage-1 runs print their own lines above
    return results


if __name__ == "__main__":
    main()
