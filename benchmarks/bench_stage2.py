#!/usr/bin/env python
"""CPU benchmark of ONE Stage-2 training step: UMT (`UMTForVideoTextRetrieval` + teacher) vs the official code.

What one step is (both implementations, same config, same batch, random weights, random inputs)
----------------------------------------------------------------------------------------------
    teacher     frozen CLIP forward on every frame, semantic mask (80 % of each frame's tokens dropped), teacher
                targets gathered to the visible tokens
    video       student video forward on the visible tokens (+ the K UTA heads), video projection
    text        text encoder (the text-only BERT layers), text projection
    vtc         video-text contrastive loss
    vtm         hard negatives from the similarity softmax, 3B fusion passes (positive, two negatives), ITM head, loss
    mlm         caption corruption, text-only + fusion pass over the corrupted caption, MLM head, loss
    uta         the UTA loss (heads already ran in `video`)
    backward    backward of the sum of the four losses
    optimizer   AdamW step (lr 1e-4, betas 0.9/0.999, weight decay 0.02; torch's fused kernel) + zero_grad

The per-term columns (teacher ... uta) are FORWARD times; the backward of all terms is one column (autograd runs it as
one graph; per-term backward is not separable without changing the step). The UMT step is the body of
`UMTForVideoTextRetrieval.forward`, called piece by piece; `--quick` checks that the pieces' losses equal the
model's own forward (eval mode, same negatives and MLM corruption) to 1e-5. The official step is the body of the
official `UMT.forward` (models/umt.py), called piece by piece from its own modules, with `all_gather=False`
(one process) -- the official forward's VTC all-gather needs a process group.

Sizes (`--sizes`)
-----------------
    b16     video ViT-B/16, 8 x 224² (1568 tokens, 320 visible), K = 6, teacher CLIP ViT-B/16 (random weights);
            text BERT-base geometry (12 layers, width 768, vocab 30522), fusion from layer 9, embed 512, captions of
            32 tokens (the official max_txt_l); default batch 4
    small   the main job's defaults (training_scripts/run_stage2.py): video width 192, 6 blocks, 3 heads, 4 x 64²,
            patch 8 (256 tokens, 52 visible), K = 3; teacher `tiny-random` (CLIP-shaped, width 128, 6 blocks);
            text all-MiniLM-L6 geometry (6 layers, width 384, 12 heads), fusion from layer 3, embed 256, captions of
            16 tokens; default batch 16
Text pooling is the official [CLS] for both implementations (the main job uses the token mean; same cost).

Configurations (`--configs`)
---------------------------
    umt-fp32            fp32 student (SDPA), fp32 teacher: the official step's arithmetic
    umt-tbf16           fp32 student, teacher under bf16 autocast with bf16 weights (`--teacher_autocast bf16`)
    umt-amp             + student forward under bf16 autocast (`--bf16`)
    umt-amp-cpubf16     + `umt_cpu_bf16` attention in the student and the teacher (modeling_umt.attention)
    official            the official code, fp32 (its `torch.cuda.amp.autocast` does nothing on a CPU)

How it measures: as bench_stage1.py (each configuration and batch in a fresh subprocess, interleaved rounds, median of
the timed steps after `--warmup` steps; memory = RSS, the kernel's high-water mark reset before every phase; step
peak = the highest RSS of any phase minus the RSS after building models, optimizer and inputs). Rows compare by
same-run ratios against the official step (`vs official`).

Usage
-----
    python benchmarks/bench_stage2.py --official_repo /work/official_umt --out stage2.md            # everything
    python benchmarks/bench_stage2.py --official_repo ... --sizes small --configs umt-amp official
    python benchmarks/bench_stage2.py --official_repo ... --quick        # tiny sizes, 1 step: does it run, and check
    python benchmarks/bench_stage2.py --profile umt-fp32 --sizes small   # torch.profiler of one step
Nothing is asserted about time: this is a benchmark. On a shared machine compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common.py, also when this file is loaded by path
sys.path.insert(0, str(REPO_ROOT))  # modeling_umt from this checkout
sys.path.insert(0, str(REPO_ROOT / "tests"))  # _official_stage2: the one importer of the official Stage-2 code
from _common import add_worker_arguments, command_line, load_average  # noqa: E402
from _common import peak_kb, profile_phases, reset_peak, rss_kb, run_interleaved, run_worker, without_unavailable  # noqa: E402

OFFICIAL = "official"
PHASES = ("teacher", "video", "text", "vtc", "vtm", "mlm", "uta", "backward", "optimizer")
TERMS = ("vtc", "vtm", "mlm", "uta")
CLS_ID, MASK_ID, PAD_ID = 101, 103, 0
MASK_RATIO = 0.8

# name -> (family, student autocast, teacher bf16, attention implementation, description)
CONFIGS = {
    "umt-fp32": ("umt", False, False, "sdpa", "fp32 student and teacher (the official arithmetic)"),
    "umt-tbf16": ("umt", False, True, "sdpa", "fp32 student, bf16 teacher"),
    "umt-amp": ("umt", True, True, "sdpa", "student under bf16 autocast, bf16 teacher"),
    "umt-amp-cpubf16": ("umt", True, True, "umt_cpu_bf16", "umt-amp with umt_cpu_bf16 attention"),
    OFFICIAL: ("official", False, False, "eager", "official code, fp32"),
}

# size -> geometry (video, teacher, text) shared by both implementations
SIZES = {
    "b16": dict(hidden=768, depth=12, heads=12, frames=8, image=224, patch=16, k=6, teacher=dict(
        width=768, layers=12, heads=12, out=512), text=dict(hidden_size=768, num_hidden_layers=12,
        num_attention_heads=12, intermediate_size=3072, vocab_size=30522, max_position_embeddings=512),
        fusion=9, embed=512, length=32, batch=4),
    "small": dict(hidden=192, depth=6, heads=3, frames=4, image=64, patch=8, k=3, teacher=dict(
        width=128, layers=6, heads=4, out=128), text=dict(hidden_size=384, num_hidden_layers=6,
        num_attention_heads=12, intermediate_size=1536, vocab_size=30522, max_position_embeddings=512),
        fusion=3, embed=256, length=16, batch=16),
    "tiny": dict(hidden=32, depth=2, heads=2, frames=2, image=32, patch=8, k=2, teacher=dict(
        width=32, layers=2, heads=2, out=16), text=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, vocab_size=500, max_position_embeddings=64), fusion=1, embed=16, length=8, batch=4),
}  # fmt: skip


def _inputs(size: dict, batch: int):
    import torch

    g = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(batch, size["frames"], 3, size["image"], size["image"], generator=g)
    ids = torch.randint(1000 if size["text"]["vocab_size"] > 1000 else 10, size["text"]["vocab_size"],
                        (batch, size["length"]), generator=g)  # fmt: skip
    ids[:, 0] = CLS_ID if size["text"]["vocab_size"] > CLS_ID else 1
    attention_mask = torch.ones_like(ids)
    attention_mask[::2, -size["length"] // 4:] = 0  # every other caption is a quarter shorter
    ids[attention_mask == 0] = PAD_ID
    return pixel_values, ids, attention_mask, torch.arange(batch)


def _adamw(model):
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.02},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]  # fmt: skip
    return torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), fused=True)


# ------------------------------------------------------------------------------------------------------------------
# UMT
# ------------------------------------------------------------------------------------------------------------------
def build_umt(name: str, size: dict, batch: int):
    import contextlib

    import torch
    from transformers import BertConfig

    from modeling_umt import UMTConfig, UMTForVideoTextRetrieval, UMTRetrievalConfig
    from modeling_umt.alignment import visible_teacher_features
    from modeling_umt.configuration_umt_retrieval import STAGE2_VISION_DEFAULTS
    from modeling_umt.losses import mask_tokens_for_mlm, video_text_similarity, vtc_loss, vtm_loss, vtm_negatives
    from modeling_umt.masking import semantic_mask
    from modeling_umt.teachers import CLIPVisionTower, UMTTeacher

    _, amp, teacher_bf16, attn, _ = CONFIGS[name]
    vocab = size["text"]["vocab_size"]
    vision = UMTConfig(**{**STAGE2_VISION_DEFAULTS, "hidden_size": size["hidden"], "num_hidden_layers": size["depth"],
                          "num_attention_heads": size["heads"], "intermediate_size": 4 * size["hidden"],
                          "num_frames": size["frames"], "image_size": size["image"], "patch_size": size["patch"],
                          "drop_path_rate": 0.1, "uta_num_layers": size["k"],
                          "uta_output_dim": size["teacher"]["out"]})  # fmt: skip
    config = UMTRetrievalConfig(
        vision_config=vision, text_config=BertConfig(**size["text"]), fusion_layer=size["fusion"],
        embed_dim=size["embed"], mask_token_id=MASK_ID if vocab > MASK_ID else 2,
        cls_token_id=CLS_ID if vocab > CLS_ID else 1, text_pooling="cls",
    )  # fmt: skip
    model = UMTForVideoTextRetrieval._from_config(config, attn_implementation=attn).train()
    t = size["teacher"]
    tower = CLIPVisionTower(width=t["width"], layers=t["layers"], heads=t["heads"], patch_size=size["patch"],
                            image_size=size["image"], output_dim=t["out"])  # fmt: skip
    teacher = UMTTeacher(tower, num_return_layers=size["k"], autocast_dtype=torch.bfloat16 if teacher_bf16 else None,
                         attn_implementation="umt_cpu_bf16" if attn == "umt_cpu_bf16" else "sdpa")  # fmt: skip
    pixel_values, ids, attention_mask, idx = _inputs(size, batch)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp else contextlib.nullcontext
    c = model.config

    def f_teacher(s):
        target = teacher(pixel_values)
        s["mask"] = semantic_mask(target.cls_attention, MASK_RATIO)
        s["targets"] = visible_teacher_features(target.hidden_states, s["mask"])
        return s

    def f_video(s):
        model.clamp_temperature()
        with autocast():
            s["tokens"], pooled, s["uta"] = model._encode_video_for_training(pixel_values, s["mask"], True, True)
            s["vp"], _ = model._project_video(pooled)
        return s

    def f_text(s):
        with autocast():
            s["text"] = model.get_text_features(ids, attention_mask)
        return s

    def f_vtc(s):
        with autocast():
            s["loss_vtc"] = vtc_loss(s["vp"], s["text"].projected_embeds, model.temp, idx, gather=False)
        return s

    def f_vtm(s):
        with autocast():
            if "negatives" not in s:
                sim = video_text_similarity(s["vp"].detach(), s["text"].projected_embeds.detach(), model.temp.detach())
                s["negatives"] = vtm_negatives(sim, idx, hard=c.vtm_hard_negatives)
            vneg, tneg = s["negatives"]
            tokens, hidden = s["tokens"], s["text"].last_hidden_state
            s["loss_vtm"] = vtm_loss(model.get_itm_logits(
                torch.cat([tokens, tokens[vneg], tokens]), torch.cat([hidden, hidden, hidden[tneg]]),
                torch.cat([attention_mask, attention_mask, attention_mask[tneg]]),
            ))  # fmt: skip
        return s

    def f_mlm(s):
        if "mlm" not in s:
            s["mlm"] = mask_tokens_for_mlm(ids, c.mask_token_id, vocab, c.mlm_probability,
                                           pad_token_id=PAD_ID, cls_token_id=c.cls_token_id)  # fmt: skip
        with autocast():
            s["loss_mlm"] = model.masked_lm_loss(ids, attention_mask, s["tokens"], *s["mlm"])
        return s

    def f_uta(s):
        with autocast():
            s["loss_uta"] = model.uta_heads.loss(s["uta"], s["targets"], s["mask"])
        return s

    def check():
        """The pieces' losses against the model's own forward (eval: no drop path / dropout), same draws."""
        model.eval()
        with torch.no_grad():
            s = {}
            for fn in (f_teacher, f_video, f_text, f_vtc, f_vtm, f_mlm, f_uta):
                s = fn(s)
            with autocast():
                out = model(pixel_values, ids, attention_mask, bool_masked_pos=s["mask"], teacher_features=s["targets"],
                            ids=idx, return_loss=True, vtm_negatives_override=s["negatives"],
                            mlm_input_ids=s["mlm"][0], mlm_labels=s["mlm"][1], gather_vtc=False)  # fmt: skip
        model.train()
        return {term: abs(float(s["loss_" + term]) - float(getattr(out, "loss_" + term))) for term in TERMS}

    fns = dict(teacher=f_teacher, video=f_video, text=f_text, vtc=f_vtc, vtm=f_vtm, mlm=f_mlm, uta=f_uta)
    return model, teacher, fns, check


# ------------------------------------------------------------------------------------------------------------------
# Official
# ------------------------------------------------------------------------------------------------------------------
def build_official(off, size: dict, batch: int):
    from _official_stage2 import build_official_umt

    vocab = size["text"]["vocab_size"]
    t = size["teacher"]
    model = build_official_umt(
        off,
        vision=dict(img_size=size["image"], patch_size=size["patch"], encoder_embed_dim=size["hidden"],
                    encoder_depth=size["depth"], encoder_num_heads=size["heads"], num_frames=size["frames"],
                    drop_path_rate=0.1, clip_decoder_embed_dim=size["hidden"], clip_output_dim=t["out"],
                    clip_return_layer=size["k"]),
        bert=size["text"], fusion_layer=size["fusion"], embed_dim=size["embed"], mlm_probability=0.5,
        pad_id=PAD_ID, cls_id=CLS_ID if vocab > CLS_ID else 1, mask_id=MASK_ID if vocab > MASK_ID else 2,
        teacher=dict(input_resolution=size["image"], patch_size=size["patch"], width=t["width"], layers=t["layers"],
                     heads=t["heads"], output_dim=t["out"], clip_return_layer=size["k"]),
        video_mask_ratio=MASK_RATIO,
    ).train()  # fmt: skip
    model.clip_teacher.eval()
    pixel_values, ids, attention_mask, idx = _inputs(size, batch)
    image = pixel_values.permute(0, 2, 1, 3, 4)  # the official layout (B, C, T, H, W)
    text = types.SimpleNamespace(input_ids=ids, attention_mask=attention_mask)

    def f_teacher(s):
        s["mask"], s["clip_output"] = model.encode_teacher(image)
        return s

    def f_video(s):
        model.clip_contrastive_temperature()
        s["vision_embeds"], pooled, s["student_output"] = model.vision_encoder(image, s["mask"], False, False)
        s["vision_proj"] = model.vision_proj(pooled)
        return s

    def f_text(s):
        s["text_embeds"], pooled_text = model.encode_text(text)
        s["text_proj"] = model.text_proj(pooled_text)
        return s

    def f_vtc(s):
        s["loss_vtc"] = model.criterion_vtc_vtm.vtc_loss(s["vision_proj"], s["text_proj"], idx, model.temp,
                                                         all_gather=False)  # fmt: skip
        return s

    def f_vtm(s):
        s["loss_vtm"] = model.criterion_vtc_vtm.vtm_loss(
            model.get_text_encoder(), model.itm_head, model.temp, s["vision_embeds"], s["text_embeds"],
            s["vision_proj"], s["text_proj"], attention_mask, idx,
        )  # fmt: skip
        return s

    def f_mlm(s):
        s["loss_mlm"] = model.criterion_mlm.mlm_loss(model.text_encoder, text, s["vision_embeds"], None)
        return s

    def f_uta(s):
        s["loss_uta"] = model.criterion_uta.uta_loss(s["student_output"], s["clip_output"])
        return s

    def check():
        return {}

    fns = dict(teacher=f_teacher, video=f_video, text=f_text, vtc=f_vtc, vtm=f_vtm, mlm=f_mlm, uta=f_uta)
    return model, model.clip_teacher, fns, check


# ------------------------------------------------------------------------------------------------------------------
# Worker
# ------------------------------------------------------------------------------------------------------------------
def worker(args) -> None:
    import contextlib
    import gc
    import io

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size = SIZES[args.size]
    stack = contextlib.ExitStack()
    if CONFIGS[args.config][0] == OFFICIAL:
        from _official_stage2 import official_multi_modality

        off = stack.enter_context(official_multi_modality(args.official_repo))
        with contextlib.redirect_stdout(io.StringIO()):
            model, teacher, fns, check = build_official(off, size, args.batch_size)
    else:
        model, teacher, fns, check = build_umt(args.config, size, args.batch_size)
    opt = _adamw(model)

    def f_backward(s):
        sum(s["loss_" + term] for term in TERMS).backward()
        return s

    def f_optimizer(s):
        opt.step()
        opt.zero_grad(set_to_none=True)
        return s

    fns = dict(fns, backward=f_backward, optimizer=f_optimizer)
    if args.profile:
        profile_step(fns, args)
        stack.close()
        return
    diffs = check() if args.check else {}
    gc.collect()
    rss_built = rss_kb()
    records = []
    for i in range(args.warmup + args.steps):
        state, rec, peak = {}, {"timed": i >= args.warmup}, 0
        for phase in PHASES:
            reset_peak()
            start = time.perf_counter()
            state = fns[phase](state)
            rec[phase] = time.perf_counter() - start
            peak = max(peak, peak_kb())
        rec["step"] = sum(rec[p] for p in PHASES)
        rec["peak_kb"] = peak
        rec["losses"] = {t: float(state["loss_" + t]) for t in TERMS}
        records.append(rec)
        del state
    stack.close()
    result = dict(
        config=args.config, size=args.size, batch_size=args.batch_size, threads=torch.get_num_threads(),
        torch=torch.__version__, steps=[r for r in records if r["timed"]],
        step_peak_mib=(max(r["peak_kb"] for r in records) - rss_built) / 1024,
        student_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        teacher_params=sum(p.numel() for p in teacher.parameters()), check=diffs,
    )  # fmt: skip
    with open(args.result_file, "w") as f:
        json.dump(result, f)


def profile_step(fns: dict, args) -> None:
    """One warm-up step, then one step under torch.profiler: phase totals and the top ops by self CPU time."""
    profile_phases(fns, PHASES, f"{args.config} size {args.size} batch {args.batch_size}")


# ------------------------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------------------------
def summarize(results: dict, names: list[str], jobs: list[tuple[str, int]]) -> str:
    def med(runs, key):
        return statistics.median(s[key] for r in runs for s in r["steps"])

    lines = [
        "| size | configuration | batch | step s (median) | min - max | n | teacher | video | text | vtc | vtm | mlm "
        "| uta | backward | optimizer | step peak (MiB) | vs official |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, batch in dict.fromkeys((s, b) for s, b in jobs):
        official = results.get((f"{OFFICIAL}@{size}", batch))
        ref = med(official, "step") if official else None
        for n in names:
            runs = results.get((f"{n}@{size}", batch))
            if not runs:
                continue
            steps = [s["step"] for r in runs for s in r["steps"]]
            step = med(runs, "step")
            phases = " | ".join(f"{med(runs, p):.3f}" for p in PHASES)
            peak = statistics.median(r["step_peak_mib"] for r in runs)
            ratio = "-" if ref is None else f"{step / ref:.2f}x"
            lines.append(f"| {size} | {n} | {batch} | {step:.3f} | {min(steps):.3f} - {max(steps):.3f} | {len(steps)} "
                         f"| {phases} | {peak:.0f} | {ratio} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=None, help="subset (default: all)")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["b16", "small"])
    parser.add_argument("--batch", type=int, default=None,
                        help="batch for every size (default: the size's own: b16 4, small 16, tiny 4)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=3, help="timed steps per subprocess (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved subprocesses per configuration (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--official_repo", default=os.environ.get("UMT_OFFICIAL_REPO"),
                        help="official UMT checkout (default $UMT_OFFICIAL_REPO); without it that row is skipped")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: the tiny size, 1 step, no warm-up, and the pieces-vs-forward check")
    parser.add_argument("--check", action="store_true", help="check UMT's pieces against its forward (worker)")
    parser.add_argument("--profile", default=None, choices=list(CONFIGS),
                        help="profile one step of this configuration (after one warm-up step) at each size")
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    add_worker_arguments(parser)
    args = parser.parse_args()
    if args._worker:
        worker(args)
        return
    if args.quick:
        args.sizes, args.steps, args.warmup, args.check = ["tiny"], 1, 0, True
    if args.profile:
        for size in args.sizes:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", "--config", args.profile, "--size", size,
                   "--batch_size", str(args.batch or SIZES[size]["batch"]), "--profile", args.profile]  # fmt: skip
            cmd += ["--threads", str(args.threads)] if args.threads else []
            cmd += ["--official_repo", args.official_repo] if args.official_repo else []
            subprocess.run(cmd, env=dict(os.environ, PYTHONWARNINGS="ignore", TRANSFORMERS_VERBOSITY="error"),
                           cwd=str(REPO_ROOT), check=True)  # fmt: skip
        return

    def official_available() -> None:
        if not args.official_repo:
            raise FileNotFoundError("no --official_repo / $UMT_OFFICIAL_REPO")
        if not (Path(args.official_repo) / "multi_modality/models/umt.py").is_file():
            raise FileNotFoundError(f"no multi_modality/models/umt.py under {args.official_repo}")

    names = without_unavailable(args.configs or list(CONFIGS), OFFICIAL, official_available)
    jobs = [(size, args.batch or SIZES[size]["batch"]) for size in args.sizes]
    work = [(f"{n}@{size}", batch) for size, batch in jobs for n in names]
    started = datetime.datetime.now().astimezone()
    load0 = load_average()
    print(f"# {len(work)} jobs x {args.rounds} rounds, warmup {args.warmup}, steps {args.steps}; cpu_count "
          f"{os.cpu_count()}, load avg {load0}", flush=True)  # fmt: skip

    def run(job: str, batch: int) -> dict:
        name, size = job.split("@")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", "--config", name, "--size", size,
               "--batch_size", str(batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]  # fmt: skip
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.official_repo:
            cmd += ["--official_repo", args.official_repo]
        if args.check:
            cmd.append("--check")
        env = dict(os.environ, PYTHONWARNINGS="ignore", TRANSFORMERS_VERBOSITY="error")
        return run_worker(cmd, f"{job} batch {batch}", env=env, cwd=str(REPO_ROOT))

    def report(res: dict) -> str:
        steps = ", ".join(f"{s['step']:.2f}" for s in res["steps"])
        check = "" if not res["check"] else " check max|pieces - forward| " + ", ".join(
            f"{k} {v:.1e}" for k, v in res["check"].items())  # fmt: skip
        return f"step s [{steps}] peak {res['step_peak_mib']:.0f} MiB, losses {res['steps'][-1]['losses']}{check}"

    results = run_interleaved(work, args.rounds, run, report)
    checks = [v for runs in results.values() for r in runs for v in r["check"].values()]
    any_res = next(iter(results.values()))[0]
    meta = (
        f"date {started:%Y-%m-%d %H:%M %Z}; torch {any_res['torch']}; torch threads {any_res['threads']}; cpu_count "
        f"{os.cpu_count()}; {platform.processor() or platform.machine()}; load avg before {load0} after "
        f"{load_average()}\ncommand: {command_line()}\n"
        f"time: median over {args.rounds} round(s) x {args.steps} timed steps after {args.warmup} warm-up step(s); "
        "per-term columns are forward seconds; backward is all terms together\n"
    )
    text = meta + "\n" + summarize(results, names, jobs)
    if checks:
        text += f"\nUMT pieces vs its forward: max |loss difference| {max(checks):.1e} (expected <= 1e-5)\n"
    print()
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    if checks and max(checks) > 1e-5:
        sys.exit("the UMT step pieces do not reproduce UMTForVideoTextRetrieval.forward; the benchmark is stale")


if __name__ == "__main__":
    main()
