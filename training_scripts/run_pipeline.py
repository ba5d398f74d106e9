#!/usr/bin/env python
"""The main job: UMT's progressive pipeline on built-in defaults, each stage a real script of training_scripts/.

    python training_scripts/run_pipeline.py [--output_dir outputs/pipeline] [--force STAGE ...]

Stages, run in order (each a subprocess with that script's defaults, chained by their outputs):

  1. stage1     run_stage1.py                                   synthetic videos -> Stage-1 student (UTA, semantic mask)
  2. stage2     run_stage2.py --stage1_model stage1/model       + BERT (all-MiniLM-L6-v2): VTC + VTM + MLM + UTA
  3. finetune   run_finetune.py --model_name_or_path stage1/model   action classification (the paper fine-tunes the
                                                                Stage-1 encoder), multi-view test top-1 / top-5
  4. retrieval  run_retrieval.py --model_name_or_path stage2/model  zero-shot text-to-video / video-to-text R@1

A stage whose outputs exist is skipped (and when every stage and the results exist, nothing is written at all: a rerun
leaves the folder byte-identical); an interrupted one resumes from its last checkpoint (the scripts'
`--resume_from_checkpoint` logic), so rerunning after a crash or Ctrl-C continues where it stopped. At the end it
prints a results table (per stage: what was trained, loss at start and end, metric) and writes under --output_dir:

  results.json, results.md         the numbers and the table
  figures/loss_curves.png          loss curves per stage and loss term
  figures/semantic_masks.png       the teacher's semantic mask on a few held-out clips (modeling_umt.visualization)

Extra arguments for one stage: --stage1_args "...", --stage2_args "...", --finetune_args "...", --retrieval_args "...".
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field

import torch
from transformers import AutoModel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
import modeling_umt  # noqa: E402,F401  (registers UMT with the Auto classes)
from modeling_umt.cli import run_script  # noqa: E402
from modeling_umt.teachers import build_teacher  # noqa: E402
from modeling_umt.visualization import (  # noqa: E402
    load_clips,
    loss_terms,
    plot_loss_curves,
    plot_semantic_masks,
    read_log_history,
)
from processors.datasets import load_video_records  # noqa: E402
from processors.fileio import atomic_write_text  # noqa: E402
from processors.synthetic import ensure_synthetic_dataset  # noqa: E402


@dataclass
class Stage:
    name: str
    script: str
    what: str
    args: list[str] = field(default_factory=list)
    outputs: tuple[str, ...] = ("model/config.json",)  # relative to the stage directory; all present = done


def stages(out: str) -> list[Stage]:
    d = lambda name: os.path.join(out, name)  # noqa: E731
    return [
        Stage("stage1", "run_stage1.py", "video ViT from scratch vs a frozen teacher (UTA, 80% semantic masking)"),
        Stage(
            "stage2", "run_stage2.py", "Stage-1 encoder + BERT: VTC + VTM + MLM + UTA on captioned videos",
            ["--stage1_model", os.path.join(d("stage1"), "model")],
        ),
        Stage(
            "finetune", "run_finetune.py", "Stage-1 encoder + classifier on the 10 action classes",
            ["--model_name_or_path", os.path.join(d("stage1"), "model")],
            outputs=("model/config.json", "model/video_preprocessor_config.json", "test_results.json"),
        ),
        Stage(
            "retrieval", "run_retrieval.py", "zero-shot retrieval with the Stage-2 model (held-out clips)",
            ["--model_name_or_path", os.path.join(d("stage2"), "model")],
            outputs=("retrieval_metrics.json",),
        ),
    ]


RESULT_FILES = ("results.json", "results.md", "figures/loss_curves.png", "figures/semantic_masks.png")


def is_done(stage: Stage, stage_dir: str) -> bool:
    return all(os.path.isfile(os.path.join(stage_dir, o)) for o in stage.outputs)


def run_stage(stage: Stage, stage_dir: str, extra: list[str], force: bool) -> float | None:
    """Run one script in a subprocess unless its outputs exist; returns the seconds spent (None when skipped)."""
    if is_done(stage, stage_dir) and not force:
        print(f"[pipeline] {stage.name}: outputs in {stage_dir} exist, skipped", flush=True)
        return None
    script, args = os.path.join(HERE, stage.script), ["--output_dir", stage_dir, *stage.args, *extra]
    print(f"\n[pipeline] {stage.name}: {shlex.join([script, *args])}", flush=True)
    try:
        return run_script(script, args, cwd=ROOT)
    except subprocess.CalledProcessError as error:
        raise SystemExit(
            f"[pipeline] {stage.name} failed (exit {error.returncode}); rerun the same command to resume it from its "
            f"last checkpoint once the cause is fixed."
        ) from None


# ---- summaries ------------------------------------------------------------------------------------------------------
def loss_summary(stage_dir: str, terms: tuple[str, ...] = ()) -> dict:
    """First and last logged value of the training loss (and of `terms`) of a Trainer run."""
    curves = loss_terms(read_log_history(stage_dir))
    out = {}
    for key in ("loss", *terms):
        if key in curves:
            steps, values = curves[key]
            out[key] = {"start": values[0], "end": values[-1], "steps": steps[-1]}
    return out


def check_features(model_dir: str, synthetic: dict, num_clips: int = 4) -> dict:
    """Load the Stage-1 student through AutoModel and encode held-out clips: what a user gets back."""
    model = AutoModel.from_pretrained(model_dir).eval()
    cfg = model.config
    root = ensure_synthetic_dataset(**synthetic)
    records = list(load_video_records(str(root / "metadata.csv"), split="val"))[:num_clips]
    pixel_values = load_clips([r["video"] for r in records], num_frames=cfg.num_frames, image_size=cfg.image_hw[0])
    with torch.no_grad():
        out = model(pixel_values)
    return {
        "model_class": type(model).__name__,
        "last_hidden_state": list(out.last_hidden_state.shape),
        "pooler_output": list(out.pooler_output.shape),
    }


def make_figures(out: str, stage_dirs: dict[str, str], synthetic: dict) -> dict[str, str]:
    """Loss curves of the three training stages and the semantic mask of the Stage-1 teacher on held-out clips."""
    figures = os.path.join(out, "figures")
    curves = plot_loss_curves(
        {
            "Stage 1 (UTA)": stage_dirs["stage1"],
            "Stage 2 (VTC + VTM + MLM + UTA)": stage_dirs["stage2"],
            "Fine-tuning (cross-entropy)": stage_dirs["finetune"],
        },
        os.path.join(figures, "loss_curves.png"),
    )
    # The teacher Stage 1 trained against: run_stage1's default, rebuilt from its fixed seed.
    with open(os.path.join(stage_dirs["stage1"], "model", "config.json")) as f:
        cfg = json.load(f)
    image_size = cfg["image_size"] if isinstance(cfg["image_size"], int) else cfg["image_size"][0]
    teacher = build_teacher("tiny-random", num_return_layers=1, image_size=image_size, patch_size=cfg["patch_size"])
    root = ensure_synthetic_dataset(**synthetic)
    records = list(load_video_records(str(root / "metadata.csv"), split="val"))[:3]
    clips = load_clips([r["video"] for r in records], num_frames=cfg["num_frames"], image_size=image_size)
    with torch.no_grad():
        masks = plot_semantic_masks(
            clips, teacher, os.path.join(figures, "semantic_masks.png"), mask_ratio=0.8,
            titles=[r.get("caption", "") .replace(" moving", "\nmoving") for r in records],
            teacher_name="the demo's tiny random teacher; use --teacher clip_b16 for CLIP",
        )
    return {"loss_curves": str(curves), "semantic_masks": str(masks)}


def results_table(results: dict) -> str:
    s1, s2, ft, ret = (results[k] for k in ("stage1", "stage2", "finetune", "retrieval"))

    def span(entry: dict, key: str = "loss") -> str:
        e = entry["losses"].get(key)
        return "-" if e is None else f"{e['start']:.3f} -> {e['end']:.3f}"

    itc, itm, chance = ret["metrics"]["itc"], ret["metrics"]["itc+itm"], ret["metrics"]["chance"]
    top1 = ft["test"].get("test_top1")
    rows = [
        ("Stage 1", s1["what"], span(s1), f"AutoModel -> {s1['features']['model_class']}, "
         f"features {tuple(s1['features']['pooler_output'])}"),
        ("Stage 2", s2["what"], span(s2), "VTC " + span(s2, "loss_vtc") + ", VTM " + span(s2, "loss_vtm") +
         ", MLM " + span(s2, "loss_mlm") + ", UTA " + span(s2, "loss_uta")),
        ("Fine-tuning", ft["what"], span(ft),
         f"test top-1 {100 * top1:.1f}% (chance 10%), top-5 {100 * ft['test'].get('test_top5', 0):.1f}%, "
         f"{ft['test'].get('test_num_views')} views"),
        ("Retrieval", ret["what"], "-",
         f"R@1 t2v / v2t: ITC {itc['t2v_r1']:.1f} / {itc['v2t_r1']:.1f}, ITC+ITM {itm['t2v_r1']:.1f} / "
         f"{itm['v2t_r1']:.1f} (chance {chance['t2v_r1']:.1f}; {ret['metrics']['num_videos']} clips)"),
    ]
    lines = ["| stage | trained | loss start -> end | result |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default."""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--output_dir", default="outputs/pipeline", help="one sub-folder per stage goes here")
    parser.add_argument("--force", nargs="*", default=[], choices=["stage1", "stage2", "finetune", "retrieval"],
                        help="rerun these stages even when their outputs exist")
    parser.add_argument("--synthetic_num_videos", type=int, default=None,
                        help="size of the synthetic dataset for every stage (default: each script's own default)")
    parser.add_argument("--synthetic_size", type=int, default=None, help="resolution of the synthetic videos")
    for name in ("stage1", "stage2", "finetune", "retrieval"):
        parser.add_argument(f"--{name}_args", default="", help=f"extra arguments for the {name} script (one string)")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)

    data = []
    if args.synthetic_num_videos is not None:
        data += ["--synthetic_num_videos", str(args.synthetic_num_videos)]
    if args.synthetic_size is not None:
        data += ["--synthetic_size", str(args.synthetic_size)]
    synthetic = dict(num_videos=args.synthetic_num_videos or 600, size=args.synthetic_size or 64)  # run_stage1's

    results: dict = {}
    start = time.time()
    stage_dirs = {}
    for stage in stages(out):
        stage_dir = stage_dirs[stage.name] = os.path.join(out, stage.name)
        extra = [*data, *shlex.split(getattr(args, f"{stage.name}_args"))]
        seconds = run_stage(stage, stage_dir, extra, force=stage.name in args.force)
        results[stage.name] = {"what": stage.what, "dir": stage_dir, "seconds": None if seconds is None else round(seconds, 1)}
    if all(results[name]["seconds"] is None for name in stage_dirs) and all(
        os.path.isfile(os.path.join(out, name)) for name in RESULT_FILES
    ):  # a rerun of a finished pipeline: every output stays as it is
        with open(os.path.join(out, "results.md")) as f:
            print("\n" + f.read())
        print(f"[pipeline] every stage and the results in {out} exist: nothing to do")
        with open(os.path.join(out, "results.json")) as f:
            return json.load(f)

    results["stage1"]["losses"] = loss_summary(stage_dirs["stage1"])
    results["stage1"]["features"] = check_features(os.path.join(stage_dirs["stage1"], "model"), synthetic)
    results["stage2"]["losses"] = loss_summary(stage_dirs["stage2"], ("loss_vtc", "loss_vtm", "loss_mlm", "loss_uta"))
    results["finetune"]["losses"] = loss_summary(stage_dirs["finetune"])
    with open(os.path.join(stage_dirs["finetune"], "test_results.json")) as f:
        results["finetune"]["test"] = json.load(f)
    with open(os.path.join(stage_dirs["retrieval"], "retrieval_metrics.json")) as f:
        results["retrieval"]["metrics"] = json.load(f)
    results["figures"] = make_figures(out, stage_dirs, synthetic)
    results["total_seconds_this_run"] = round(time.time() - start, 1)

    table = results_table(results)
    print("\n" + table + "\n")
    for name, path in results["figures"].items():
        print(f"[pipeline] figure {name}: {path}")
    for name, text in (("results.json", json.dumps(results, indent=2)), ("results.md", table + "\n")):
        atomic_write_text(os.path.join(out, name), text)
    print(f"[pipeline] results: {os.path.join(out, 'results.md')} and results.json "
          f"({results['total_seconds_this_run']:.0f} s this run)")
    return results


if __name__ == "__main__":
    main()
