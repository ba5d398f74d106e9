#!/usr/bin/env python
"""The main job: UMT's progressive recipe and the paper's argument in miniature, on built-in synthetic videos, CPU.

    python training_scripts/run_pipeline.py [--output_dir outputs/pipeline] [--force STAGE ...] [--lanes 2]

Every stage is a real script of training_scripts/ (a subprocess, its output in <stage>/log.txt), chained by their
outputs; up to --lanes stages run at once, each on --threads torch threads:

  teacher               run_teacher.py     a small CLIP-style image teacher: single frames vs their captions, with the
                                           real all-MiniLM-L6-v2 text side (no CLIP weights can be had offline)
  stage1                run_stage1.py      video ViT from scratch, distilled from that teacher (UTA, 80% semantic mask)
  stage2                run_stage2.py      Stage-1 student + all-MiniLM-L6-v2: VTC + VTM + MLM + UTA on captioned clips
  finetune              run_finetune.py    Stage-1 student -> action classifier on the 10 motion classes
  retrieval             run_retrieval.py   zero-shot text<->video retrieval with the Stage-2 model (ITC, ITC + ITM)
and the ablations, each at the same budget as what it is compared with:
  finetune_random_init  the classifier from random initialisation (and both with a second seed: *_seed1)
  finetune_frame_level  the Stage-1 weights with every frame encoded alone (order-blind)
  stage1_random_mask,   Stage 1 with random instead of semantic masking, then the same fine-tuning
  finetune_random_mask
  finetune_teacher      the image teacher's frame features, fine-tuned the same way

A stage whose outputs exist is skipped (a rerun of a finished job writes nothing); an interrupted stage resumes from
its last checkpoint. A status line shows the running stages, their steps and the expected remaining time. At the end
it prints and writes (under --output_dir) results.md / results.json: a table per stage and the ablation table, and
figures/: loss_curves.png, semantic_masks.png (the trained teacher), confusion_matrix.png.

Extra arguments for one stage: --stage_args "finetune=--max_steps 2000" (repeatable).
What differs from the paper's recipe, and why: docs/pipeline.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
import modeling_umt  # noqa: E402,F401  (registers UMT with the Auto classes)
from modeling_umt.pipeline_report import (  # noqa: E402
    ablation_rows, ablation_table, check_features, loss_summary, make_figures, read_json, stage_table,
)
from modeling_umt.stage_runner import Stage, StageFailed, format_seconds, run_stages  # noqa: E402
from processors.datasets import load_video_records  # noqa: E402
from processors.fileio import atomic_write_text  # noqa: E402
from processors.synthetic import CLASS_NAMES, ensure_synthetic_dataset  # noqa: E402

# The built-in budget (docs/pipeline.md): 4,000 clips of 16 frames at 32 px; students see 4 frames of 16 px.
SYNTHETIC = dict(num_videos=4000, size=32)
RUN = ["--use_cpu", "--dataloader_num_workers", "0", "--disable_tqdm", "True", "--preload_videos", "True"]
STUDENT = ["--num_frames", "4", "--image_size", "16", "--patch_size", "4", "--hidden_size", "64",
           "--num_hidden_layers", "3", "--num_attention_heads", "4", "--intermediate_size", "256"]
STAGE1 = [*RUN, *STUDENT, "--uta_num_layers", "2", "--max_steps", "600", "--learning_rate", "1.5e-3",
          "--per_device_train_batch_size", "32", "--warmup_steps", "0.1", "--logging_steps", "25",
          "--save_steps", "200", "--save_total_limit", "1"]
FINETUNE = [*RUN, "--num_frames", "4", "--image_size", "16", "--max_steps", "1000", "--learning_rate", "2e-3",
            "--per_device_train_batch_size", "32", "--warmup_steps", "0.1", "--logging_steps", "25",
            "--eval_strategy", "no", "--save_strategy", "steps", "--save_steps", "250", "--save_total_limit", "1",
            "--test_num_clips", "2", "--rand_augment", "none", "--reprob", "0", "--min_crop_area", "0.5",
            "--mixup", "0", "--cutmix", "0", "--drop_path_rate", "0.0"]
STAGE2 = [*RUN, "--num_frames", "4", "--image_size", "16", "--patch_size", "4", "--uta_num_layers", "2",
          "--max_steps", "600", "--per_device_train_batch_size", "16", "--learning_rate", "1e-3", "--max_text_length", "12",
          "--vtm_loss_weight", "6",
          "--logging_steps", "25", "--save_steps", "200",
          "--save_total_limit", "1"]
SHAPE = ["--patch_size", "4", "--hidden_size", "64", "--num_hidden_layers", "3", "--num_attention_heads", "4",
         "--intermediate_size", "256"]


def stages(out: str, synthetic: dict = SYNTHETIC) -> list[Stage]:
    """The stages, writing under `out`, every one on the synthetic dataset `synthetic` (num_videos, size)."""
    data = ["--synthetic_num_videos", str(synthetic["num_videos"]), "--synthetic_size", str(synthetic["size"])]
    d = lambda name, *rest: os.path.join(out, name, *rest)  # noqa: E731
    s = lambda name: os.path.join(HERE, name)  # noqa: E731
    teacher = ["--teacher", f"hf:{d('teacher', 'model')}"]
    tested = ("model/config.json", "test_results.json")

    def finetune(name, what, args, after, expected):
        return Stage(name, s("run_finetune.py"), what, [*FINETUNE, *data, *args], after, tested, expected)

    # Listed in launch priority: the long chain teacher -> stage1 -> stage2 -> retrieval goes first.
    return [
        Stage("teacher", s("run_teacher.py"), "image-text teacher on single frames (frozen MiniLM text side)",
              [*data, "--use_cpu", "--disable_tqdm", "True", "--max_steps", "400"], (),
              ("model/config.json", "model/text_head.safetensors"), 70),
        finetune("finetune_random_init", "random init -> classifier (ablation)", SHAPE, (), 110),
        Stage("stage1", s("run_stage1.py"), "video ViT from scratch vs the teacher (UTA, 80% semantic masking)",
              [*STAGE1, *data, *teacher], ("teacher",), expected_s=130),
        Stage("stage2", s("run_stage2.py"), "Stage-1 student + MiniLM: VTC + VTM + MLM + UTA on captioned clips",
              [*STAGE2, *data, "--stage1_model", d("stage1", "model"), *teacher], ("stage1",), expected_s=540),
        finetune("finetune", "Stage-1 student -> classifier on the 10 motion classes",
                 ["--model_name_or_path", d("stage1", "model")], ("stage1",), 110),
        Stage("retrieval", s("run_retrieval.py"), "zero-shot retrieval with the Stage-2 model (held-out clips)",
              [*data, "--model_name_or_path", d("stage2", "model"), "--split", "test", "--use_cpu"], ("stage2",),
              ("retrieval_metrics.json",), 170),
        finetune("finetune_frame_level", "Stage-1 student, frames encoded alone (ablation)",
                 ["--model_name_or_path", d("stage1", "model"), "--frame_level"], ("stage1",), 95),
        finetune("finetune_teacher", "image teacher's frame features -> classifier (ablation)",
                 ["--model_name_or_path", d("teacher", "model")], ("teacher",), 260),
        Stage("stage1_random_mask", s("run_stage1.py"), "Stage 1 with random masking (ablation)",
              [*STAGE1, *data, *teacher, "--mask_type", "random"], ("teacher",), expected_s=130),
        finetune("finetune_random_mask", "random-mask Stage-1 student -> classifier (ablation)",
                 ["--model_name_or_path", d("stage1_random_mask", "model")], ("stage1_random_mask",), 110),
        finetune("finetune_seed1", "Stage-1 student -> classifier, seed 1",
                 ["--model_name_or_path", d("stage1", "model"), "--seed", "1"], ("stage1",), 110),
        finetune("finetune_random_init_seed1", "random init -> classifier, seed 1", [*SHAPE, "--seed", "1"], (), 110),
    ]


RESULT_FILES = ("results.json", "results.md", "figures/loss_curves.png", "figures/semantic_masks.png",
                "figures/confusion_matrix.png")


def parse_stage_args(items: list[str], names: list[str]) -> dict[str, list[str]]:
    """["finetune=--max_steps 9", "all=--report_to none"] -> {stage: extra arguments}; "all" goes to every stage
    (before the stage's own), a name ending in "*" to every stage whose name starts with the rest ("finetune*")."""
    extra: dict[str, list[str]] = {name: [] for name in names}
    for item in sorted(items, key=lambda text: not text.startswith("all=")):
        name, sep, args = item.partition("=")
        chosen = names if name == "all" else [n for n in names if n.startswith(name[:-1])] if name.endswith("*") \
            else [name] if name in names else []
        if not sep or not chosen:
            raise SystemExit(f"--stage_args {item!r}: expected STAGE=ARGS with STAGE 'all', a prefix ending in '*' "
                             f"or one of {names}")
        for n in chosen:
            extra[n].extend(shlex.split(args))
    return extra


def summarise(out: str, stage_list: list[Stage], dirs: dict[str, str], seconds: dict, synthetic: dict) -> dict:
    """Every number of the results, read back from the stages' folders."""
    root = ensure_synthetic_dataset(**synthetic)
    test = list(load_video_records(str(root / "metadata.csv"), split="test"))
    results: dict = {"stages": {}, "seconds": seconds}
    for stage in stage_list:
        entry = results["stages"][stage.name] = {"what": stage.what, "dir": dirs[stage.name]}
        terms = ("loss_vtc", "loss_vtm", "loss_mlm", "loss_uta") if stage.name == "stage2" else ()
        if stage.name != "retrieval":
            entry["losses"] = loss_summary(dirs[stage.name], terms)
        if stage.name.startswith("finetune"):
            entry["test"] = read_json(os.path.join(dirs[stage.name], "test_results.json"))
    results["stages"]["teacher"]["zero_shot"] = read_json(os.path.join(dirs["teacher"], "zero_shot_results.json"))
    results["stages"]["retrieval"]["metrics"] = read_json(os.path.join(dirs["retrieval"], "retrieval_metrics.json"))
    results["stages"]["stage1"]["features"] = check_features(os.path.join(dirs["stage1"], "model"),
                                                             [r["video"] for r in test[:4]])
    top1 = {name: (None if e.get("test") is None else 100 * e["test"]["test_top1"])
            for name, e in results["stages"].items() if name.startswith("finetune")}
    seeds = {"finetune": [top1["finetune"], top1["finetune_seed1"]],
             "finetune_random_init": [top1["finetune_random_init"], top1["finetune_random_init_seed1"]]}
    results["ablations"] = [dict(vars(r), difference=r.difference, verdict=r.verdict)
                            for r in ablation_rows(top1, seeds)]
    results["_ablation_rows"] = ablation_rows(top1, seeds)
    val = list(load_video_records(str(root / "metadata.csv"), split="val"))[:3]
    results["figures"] = make_figures(
        os.path.join(out, "figures"),
        {"teacher (image-text)": dirs["teacher"], "Stage 1 (UTA)": dirs["stage1"],
         "Stage 2 (VTC + VTM + MLM + UTA)": dirs["stage2"], "fine-tuning": dirs["finetune"]},
        os.path.join(dirs["teacher"], "model"), [r["video"] for r in val],
        [r["caption"].replace(" moving", "\nmoving") for r in val], os.path.join(dirs["finetune"], "model"),
        [r["video"] for r in test], [int(r["label"]) for r in test], list(CLASS_NAMES),
        student_image_size=16, student_patch_size=4, num_frames=4)
    return results


def tables(results: dict) -> str:
    st = results["stages"]

    def span(name: str, key: str = "loss") -> str:
        e = st[name].get("losses", {}).get(key)
        return "-" if e is None else f"{e['start']:.3f} -> {e['end']:.3f}"

    def took(name: str) -> str:
        value = results["seconds"].get(name)
        return "skipped (done before)" if value is None else f"{value:.0f}"

    def top1(name: str) -> str:
        test = st[name].get("test") or {}
        return "-" if "test_top1" not in test else (f"test top-1 {100 * test['test_top1']:.1f}% (chance 10%), "
                                                    f"top-5 {100 * test.get('test_top5', 0):.1f}%")

    zs = st["teacher"].get("zero_shot") or {}
    ret = st["retrieval"]["metrics"]
    itc, itm, chance = ret["itc"], ret["itc+itm"], ret["chance"]
    rows = [
        ("Teacher", st["teacher"]["what"], took("teacher"), span("teacher"),
         f"zero-shot on held-out frames: caption top-1 {100 * zs.get('zero_shot_top1', 0):.1f}% (chance "
         f"{100 * zs.get('zero_shot_chance_top1', 0):.1f}%), words right {100 * zs.get('zero_shot_word_accuracy', 0):.1f}%"),
        ("Stage 1", st["stage1"]["what"], took("stage1"), span("stage1"),
         f"AutoModel -> {st['stage1']['features']['model_class']}, features "
         f"{tuple(st['stage1']['features']['pooler_output'])}"),
        ("Stage 2", st["stage2"]["what"], took("stage2"), span("stage2"),
         "VTC " + span("stage2", "loss_vtc") + ", VTM " + span("stage2", "loss_vtm") + ", MLM " +
         span("stage2", "loss_mlm") + ", UTA " + span("stage2", "loss_uta")),
        ("Fine-tuning", st["finetune"]["what"], took("finetune"), span("finetune"),
         f"{top1('finetune')}, {(st['finetune'].get('test') or {}).get('test_num_views')} views"),
        ("Retrieval", st["retrieval"]["what"], took("retrieval"), "-",
         f"mean recall ITC {itc['r_mean']:.1f}, ITC+ITM {itm['r_mean']:.1f}; R@1 t2v / v2t: ITC "
         f"{itc['t2v_r1']:.1f} / {itc['v2t_r1']:.1f}, ITC+ITM {itm['t2v_r1']:.1f} / {itm['v2t_r1']:.1f} (chance "
         f"{chance['t2v_r1']:.1f}; {ret['num_videos']} clips)"),
    ]
    for name in ("finetune_random_init", "finetune_seed1", "finetune_random_init_seed1", "finetune_frame_level",
                 "stage1_random_mask", "finetune_random_mask", "finetune_teacher"):
        rows.append((name, st[name]["what"], took(name), span(name), top1(name) if name.startswith("finetune")
                     else "-"))
    return ("## Stages\n\n" + stage_table(rows) + "\n\n## The paper's argument, at the same budget\n\n"
            + ablation_table(results.pop("_ablation_rows")) + "\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default."""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--output_dir", default="outputs/pipeline", help="one sub-folder per stage goes here")
    parser.add_argument("--force", nargs="*", default=[], help="rerun these stages even when their outputs exist")
    parser.add_argument("--lanes", type=int, default=2, help="stages run at once (one per CPU core suits small models)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per stage")
    parser.add_argument("--stage_args", action="append", default=[], metavar="STAGE=ARGS",
                        help="extra arguments for one stage's script, e.g. 'finetune=--max_steps 2000'; 'all=...' for "
                        "every stage, 'finetune*=...' for every stage whose name starts with 'finetune'")
    parser.add_argument("--synthetic_num_videos", type=int, default=SYNTHETIC["num_videos"],
                        help="clips of the synthetic dataset every stage uses (80/10/10 train/val/test)")
    parser.add_argument("--synthetic_size", type=int, default=SYNTHETIC["size"], help="resolution of those clips")
    parser.add_argument("--status_every", type=float, default=15.0, help="seconds between two status lines")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    synthetic = dict(num_videos=args.synthetic_num_videos, size=args.synthetic_size)
    stage_list = stages(out, synthetic)
    names = [s.name for s in stage_list]
    extra = parse_stage_args(args.stage_args, names)
    dirs = {s.name: os.path.join(out, s.name) for s in stage_list}

    start = time.time()
    print(f"[pipeline] synthetic videos: {ensure_synthetic_dataset(**synthetic)} "
          f"({format_seconds(time.time() - start)} to make or find)", flush=True)
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        seconds = run_stages(stage_list, dirs, extra, args.force, lanes=args.lanes, threads=args.threads,
                             status_every=args.status_every, cwd=ROOT, env=env)
    except StageFailed as failure:
        raise SystemExit(f"[pipeline] {failure}") from None
    if all(v is None for v in seconds.values()) and all(os.path.isfile(os.path.join(out, f)) for f in RESULT_FILES):
        with open(os.path.join(out, "results.md")) as f:
            print("\n" + f.read())
        print(f"[pipeline] every stage and the results in {out} exist: nothing to do")
        with open(os.path.join(out, "results.json")) as f:
            return json.load(f)
    print("[pipeline] all stages done; writing the results and figures", flush=True)
    results = summarise(out, stage_list, dirs, seconds, synthetic)
    results["total_seconds_this_run"] = round(time.time() - start, 1)
    text = tables(results) + f"\nThis run: {results['total_seconds_this_run']:.0f} s.\n"
    print("\n" + text)
    for name, path in results["figures"].items():
        if name != "test_confusion":
            print(f"[pipeline] figure {name}: {path}")
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(results, indent=2, default=str))
    atomic_write_text(os.path.join(out, "results.md"), text)
    print(f"[pipeline] results: {os.path.join(out, 'results.md')} and results.json")
    return results


if __name__ == "__main__":
    main()
