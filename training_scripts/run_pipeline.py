#!/usr/bin/env python
"""The main job: the UMT pipeline on built-in defaults, each stage a real script of training_scripts/.

    python training_scripts/run_pipeline.py [--output_dir outputs/pipeline] [--stage1_steps 300]

Stages (a stage whose output exists is skipped; an interrupted one resumes from its last checkpoint):
  1. Stage-1 distillation (`run_stage1.py` with its defaults) -> <output_dir>/stage1/model
  2. Check: load the student with `AutoModel.from_pretrained`, encode a few synthetic clips and print a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def run_stage(name: str, script: str, out_dir: str, extra: list[str]) -> float:
    """Run one training script in a subprocess unless its final model exists; returns the seconds spent."""
    final = os.path.join(out_dir, "model")
    if os.path.isfile(os.path.join(final, "config.json")):
        print(f"[pipeline] {name}: {final} exists, skipped")
        return 0.0
    print(f"[pipeline] {name}: python training_scripts/{script} --output_dir {out_dir} {' '.join(extra)}", flush=True)
    start = time.time()
    subprocess.run([sys.executable, os.path.join(HERE, script), "--output_dir", out_dir, *extra], check=True)
    return time.time() - start


def summarize_stage1(out_dir: str) -> dict:
    """First and last logged training loss of a Trainer run."""
    with open(os.path.join(out_dir, "trainer_state.json")) as f:
        losses = [e["loss"] for e in json.load(f)["log_history"] if "loss" in e]
    return {"loss_start": losses[0], "loss_end": losses[-1], "logged_points": len(losses)}


def check_features(model_dir: str, num_clips: int = 4) -> dict:
    """Load the student through AutoModel and encode synthetic clips: pooled feature shape and norms."""
    import torch
    from transformers import AutoModel

    import modeling_umt  # noqa: F401  (registers UMT with the Auto classes)
    from processors.datasets import VideoClipDecoder, decode_videos, load_video_records
    from processors.synthetic import ensure_synthetic_dataset
    from processors.transforms import EvalTransform

    model = AutoModel.from_pretrained(model_dir).eval()
    cfg = model.config
    root = ensure_synthetic_dataset(num_videos=600, size=64)
    records = load_video_records(str(root / "metadata.csv"), split="val")
    clips = decode_videos(records, VideoClipDecoder(cfg.num_frames, "middle", EvalTransform(cfg.image_hw[0])))
    pixel_values = torch.stack([clips[i]["pixel_values"] for i in range(num_clips)])
    with torch.no_grad():
        out = model(pixel_values)
    return {
        "model_class": type(model).__name__,
        "last_hidden_state": list(out.last_hidden_state.shape),
        "pooler_output": list(out.pooler_output.shape),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/pipeline")
    parser.add_argument("--stage1_steps", type=int, default=200)
    args = parser.parse_args()
    stage1_dir = os.path.join(args.output_dir, "stage1")
    seconds = run_stage("Stage 1", "run_stage1.py", stage1_dir, ["--max_steps", str(args.stage1_steps)])
    results = {"stage1": {**summarize_stage1(stage1_dir), "seconds": round(seconds, 1)}}
    results["features"] = check_features(os.path.join(stage1_dir, "model"))
    print("\n| stage | trained | loss start -> end | result |")
    print("|---|---|---|---|")
    s1 = results["stage1"]
    print(
        f"| Stage 1 | UMT student vs frozen teacher (UTA, semantic masking 80%) | {s1['loss_start']:.3f} -> "
        f"{s1['loss_end']:.3f} | AutoModel -> {results['features']['model_class']}, pooled "
        f"{results['features']['pooler_output']} |"
    )
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"\n[pipeline] results written to {os.path.join(args.output_dir, 'results.json')}")


if __name__ == "__main__":
    main()
