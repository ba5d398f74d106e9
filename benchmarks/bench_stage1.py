#!/usr/bin/env python
"""CPU benchmark of ONE Stage-1 training step: UMT (teacher + semantic mask + student) vs VideoMAE vs the official code.

What one step is
----------------
    teacher     frozen CLIP ViT-B/16 forward on every frame (no grad): K=6 intermediate features + last-block
                cls attention
    mask        semantic mask from the cls attention (80 %, 40 of 196 tokens kept per frame), teacher targets gathered
    forward     student forward on the visible tokens + UTA loss
    backward    loss.backward()
    optimizer   AdamW step (betas 0.9/0.95, weight decay 0.05 on >= 2-D student parameters only) + zero_grad

Configurations (random weights, random inputs, CPU; fp32 except the teacher of the *-tbf16 rows and umt-sdpa-amp):

    umt-sdpa-tbf16, umt-sdpa-tfp32,    UMTForPreTraining (UMTConfig.from_preset("umt-b16"), use_final_norm, 8 x 224²,
    umt-eager-tbf16, umt-eager-tfp32   K=6, uta_output_dim 512, drop path 0.1) with SDPA / eager attention, and
                                       UMTTeacher.from_preset("clip_b16", random_init=True) in fp32 or under
                                       `torch.autocast("cpu", torch.bfloat16)` (`autocast_dtype`).
                                       Mask: `semantic_mask`.
    umt-sdpa-amp                       (extra, not fp32) umt-sdpa-tbf16 with the student's forward also under bf16
                                       autocast, as the official recipe runs it (fp16 autocast on GPU).
    umt-cpubf16-amp                    (extra, not fp32) umt-sdpa-amp with `umt_cpu_bf16` attention
                                       (modeling_umt.attention) in the student and the teacher.
    videomae-sdpa, videomae-eager      transformers' VideoMAEForPreTraining, ViT-B/16 defaults: 16 frames x 224²,
                                       tubelet 2 (1568 tokens), 90 % tube masking (160 visible), 4-layer 384-wide
                                       decoder, norm_pix_loss; no teacher (its "teacher" column is 0)
    official                           the official Stage-1 code, imported from --official_repo / $UMT_OFFICIAL_REPO:
                                       `pretrain_umt_base_patch16_224` (8 frames, tubelet 1, drop path 0.1, K=6,
                                       clip_output_dim 512) + `clip_b16(pretrained=False, return_attn=True)` teacher,
                                       the engine's multinomial semantic mask, target gathering and l2 loss. Its
                                       `torch.cuda.amp.autocast()` does nothing on a CPU, so it runs in fp32 as
                                       released.

All rows use the same optimizer (`--optimizer`, default `fused`: torch's fused AdamW, what `transformers.Trainer`
picks by default with torch >= 2.8; the official code uses the plain for-loop AdamW, `--optimizer loop`).

How it measures
---------------
* Every (configuration, batch size) runs in a **fresh subprocess** (fresh allocator and memory accounting),
  `--rounds` times, interleaved (every configuration, then every configuration in reverse order, ...).
* In each subprocess: build student, teacher, optimizer and input; `--warmup` untimed steps (the first one also
  allocates AdamW's state); then `--steps` timed steps. Every phase is timed with `time.perf_counter`; the step
  time is their sum. Reported: median over all timed steps of all rounds (min and max too), per phase and in total.
* Memory is resident-set size (RSS; torch's CPU tensors live in malloc/mmap memory). "RSS built" is read after the
  models, optimizer and input are built. Before each phase of every step (warm-up included) the kernel's RSS
  high-water mark is reset (`echo 5 > /proc/self/clear_refs`) and read again after it, so each phase has its own
  peak; the **step peak** is max over phases and steps minus RSS built: activations, gradients, AdamW state (2 x
  student parameters, allocated in the first step), teacher outputs, oneDNN/MKL scratch and allocator slack.
  Where the high-water mark cannot be reset (not Linux), the lifetime peak `ru_maxrss` minus RSS built is used and
  the number is marked "*". **Per-sample activation memory** = (step peak at batch 4 - step peak at batch 2) / 2:
  gradients, optimizer state and weights cancel, what is left grows with the batch. "teacher fwd" = the teacher
  phase's peak minus the RSS before it (its transient activations + the targets it returns); "teacher weights" is
  the size of its parameters.
* With glibc's default (dynamic) mmap threshold, freed blocks of up to 32 MiB stay in the heap, so RSS lags behind
  live memory and per-sample numbers move by +-30-40 MiB between runs. `--mmap_threshold 1048576` sets
  MALLOC_MMAP_THRESHOLD_ in the workers: every block >= 1 MiB is mmap'ed and returned on free, RSS follows live
  memory and the per-sample numbers repeat to a few MiB (steps get slower: use it for memory-only runs, e.g.
  `--steps 1`).
* `--profile CONFIG` runs one step of CONFIG under `torch.profiler` (after one warm-up step) and prints the top ops
  by self CPU time and by self CPU memory, plus the phase totals (record_function labels).

Usage
-----
    python benchmarks/bench_stage1.py --official_repo /path/to/unmasked_teacher --out stage1.md     # everything
    python benchmarks/bench_stage1.py --configs umt-sdpa-tbf16 videomae-sdpa --batch_sizes 2 --steps 2
    python benchmarks/bench_stage1.py --profile umt-sdpa-tbf16 --batch_sizes 2
    python benchmarks/bench_stage1.py --official_repo ... --steps 1 --mmap_threshold 1048576    # memory only
Nothing is asserted: this is a benchmark, not a test. On a shared machine compare rows of one run, not runs.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common.py, also when this file is loaded by path
from _common import add_worker_arguments, command_line, emit_report, load_average  # noqa: E402
from _common import run_interleaved, run_worker, without_unavailable  # noqa: E402
from _common import maxrss_kb, peak_kb, profile_phases, reset_peak, rss_kb  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = "official"
VIDEOMAE_SDPA = "videomae-sdpa"
VIDEOMAE_EAGER = "videomae-eager"
PHASES = ("teacher", "mask", "forward", "backward", "optimizer")

# name -> (family, student attention, teacher autocast dtype name or None, student autocast, description)
CONFIGS: dict[str, tuple[str, str, str | None, bool, str]] = {
    "umt-sdpa-tbf16": ("umt", "sdpa", "bf16", False, "UMT SDPA, teacher bf16 autocast"),
    "umt-sdpa-tfp32": ("umt", "sdpa", None, False, "UMT SDPA, teacher fp32"),
    "umt-eager-tbf16": ("umt", "eager", "bf16", False, "UMT eager, teacher bf16 autocast"),
    "umt-eager-tfp32": ("umt", "eager", None, False, "UMT eager, teacher fp32"),
    "umt-sdpa-amp": ("umt", "sdpa", "bf16", True, "UMT SDPA, teacher and student forward bf16 autocast (not fp32)"),
    "umt-cpubf16-amp": ("umt", "umt_cpu_bf16", "bf16", True, "umt-sdpa-amp with umt_cpu_bf16 attention in the student "
                        "and the teacher (not fp32)"),
    VIDEOMAE_SDPA: ("videomae", "sdpa", None, False, "VideoMAEForPreTraining SDPA (16 x 224², tubelet 2, 90 % tube)"),
    VIDEOMAE_EAGER: ("videomae", "eager", None, False, "VideoMAEForPreTraining eager"),
    OFFICIAL: ("official", "eager", None, False, "official Stage-1 code (fp32 on CPU)"),
}

FRAMES, SIZE, K, TEACHER_DIM, MASK_RATIO = 8, 224, 6, 512, 0.8
VIDEOMAE_FRAMES, VIDEOMAE_MASK_RATIO = 16, 0.9


# ------------------------------------------------------------------------------------------------------------------
# Building one configuration
# ------------------------------------------------------------------------------------------------------------------
def _adamw(model, optimizer: str):
    """AdamW(0.9, 0.95), weight decay 0.05 on >= 2-D parameters (the official / Trainer grouping), student only."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.05},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    kwargs = {"fused": True} if optimizer == "fused" else {"foreach": optimizer == "foreach"}
    return torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), **kwargs)


def _import_official(official_repo: str):
    """The official `models` package of single_modality (imported, never copied)."""
    import importlib
    import warnings

    root = Path(official_repo) / "single_modality"
    if not (root / "models" / "modeling_pretrain_umt.py").is_file():
        raise FileNotFoundError(f"no single_modality/models/modeling_pretrain_umt.py under {official_repo}")
    sys.path.insert(0, str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pretrain = importlib.import_module("models.modeling_pretrain_umt")
        clip = importlib.import_module("models.clip")
    return pretrain, clip


def build(name: str, batch: int, official_repo: str | None, optimizer: str):
    """-> (student, teacher or None, optimizer, input, step functions {phase: fn(state) -> state}, info)."""
    import contextlib
    import io

    import torch

    family, impl, teacher_dtype, student_amp, _ = CONFIGS[name]

    if family == "umt":
        sys.path.insert(0, str(REPO_ROOT))
        from modeling_umt import UMTConfig, UMTForPreTraining
        from modeling_umt.masking import semantic_mask
        from modeling_umt.teachers import UMTTeacher

        config = UMTConfig.from_preset(
            "umt-b16", use_final_norm=True, num_frames=FRAMES, image_size=SIZE, uta_num_layers=K,
            uta_output_dim=TEACHER_DIM, initializer_type="xavier_uniform",
        )  # fmt: skip
        student = UMTForPreTraining._from_config(config, attn_implementation=impl).train()
        teacher = UMTTeacher.from_preset(
            "clip_b16", random_init=True, num_return_layers=K,
            autocast_dtype=torch.bfloat16 if teacher_dtype == "bf16" else None,
            attn_implementation="umt_cpu_bf16" if impl == "umt_cpu_bf16" else "sdpa",
        )  # fmt: skip
        video = torch.randn(batch, FRAMES, 3, SIZE, SIZE)  # (B, T, C, H, W)
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if student_amp else contextlib.nullcontext()

        def f_teacher(s):
            s["target"] = teacher(video)
            return s

        def f_mask(s):
            s["mask"] = semantic_mask(s["target"].cls_attention, MASK_RATIO)
            return s

        def f_forward(s):
            with amp:
                out = student(pixel_values=video, bool_masked_pos=s.pop("mask"),
                              teacher_features=s.pop("target").hidden_states)  # fmt: skip
            s["loss"] = out.loss
            return s

        info = dict(tokens=config.num_patches, visible=FRAMES * (196 - int(196 * MASK_RATIO)),
                    attn=student.config._attn_implementation)  # fmt: skip

    elif family == "videomae":
        from transformers import VideoMAEConfig, VideoMAEForPreTraining

        sys.path.insert(0, str(REPO_ROOT))
        from modeling_umt.masking import tube_mask

        config = VideoMAEConfig()  # ViT-B/16, 16 frames, tubelet 2, 4-layer 384 decoder, norm_pix_loss=True
        student = VideoMAEForPreTraining._from_config(config, attn_implementation=impl).train()
        teacher = None
        video = torch.randn(batch, config.num_frames, 3, SIZE, SIZE)
        t_tok = config.num_frames // config.tubelet_size
        hw = (SIZE // config.patch_size) ** 2

        def f_teacher(s):
            return s

        def f_mask(s):
            s["mask"] = tube_mask(batch, t_tok, hw, VIDEOMAE_MASK_RATIO)
            return s

        def f_forward(s):
            s["loss"] = student(pixel_values=video, bool_masked_pos=s.pop("mask")).loss
            return s

        info = dict(tokens=t_tok * hw, visible=t_tok * (hw - int(hw * VIDEOMAE_MASK_RATIO)),
                    attn=student.config._attn_implementation)  # fmt: skip

    elif family == "official":
        if not official_repo:
            raise RuntimeError("the official row needs --official_repo or $UMT_OFFICIAL_REPO")
        import warnings

        pretrain, clip = _import_official(official_repo)
        with contextlib.redirect_stdout(io.StringIO()):  # its constructors print their settings
            student = pretrain.pretrain_umt_base_patch16_224(
                num_frames=FRAMES, tubelet_size=1, drop_path_rate=0.1, clip_decoder_embed_dim=768,
                clip_output_dim=TEACHER_DIM, clip_norm_type="l2", clip_return_layer=K, clip_student_return_interval=1,
            ).train()  # fmt: skip
            teacher = clip.clip_b16(
                pretrained=False, clip_norm_type="l2", input_resolution=SIZE, return_attn=True,
                clip_return_layer=K, clip_return_interval=1,
            ).eval()  # fmt: skip
        for p in teacher.parameters():
            p.requires_grad_(False)
        video = torch.randn(batch, 3, FRAMES, SIZE, SIZE)  # the official layout (B, C, T, H, W)

        def cuda_autocast():  # what the engine wraps both forwards in; disabled (with a warning) without CUDA
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.autocast("cuda", enabled=torch.cuda.is_available())

        def f_teacher(s):
            with torch.no_grad(), cuda_autocast():
                s["norm_clip"], s["attn"] = teacher(video)
            return s

        def f_mask(s):  # engine_for_pretraining_umt.py: multinomial over all N per frame, first N_vis kept
            with torch.no_grad():
                attn = s.pop("attn")
                bt, n = attn.shape
                n_vis = n - int(n * MASK_RATIO)
                order = torch.multinomial(attn, n)
                mask = torch.ones(bt, n)
                mask[torch.arange(bt)[:, None].expand(-1, n_vis), order[:, :n_vis]] = 0
                mask = mask.view(batch, -1).to(torch.bool)
                norm_clip = s.pop("norm_clip")
                k, c = norm_clip.shape[0], norm_clip.shape[-1]
                s["target"] = norm_clip[~mask.unsqueeze(0).expand(k, -1, -1)].reshape(k, batch, -1, c)
                s["mask"] = mask
            return s

        def f_forward(s):
            with cuda_autocast():
                out = student(video, s.pop("mask"))
                s["loss"] = (2 - 2 * (out * s.pop("target")).sum(dim=-1)).mean()
            return s

        info = dict(tokens=FRAMES * 196, visible=FRAMES * (196 - int(196 * MASK_RATIO)), attn="eager")
    else:
        raise ValueError(name)

    opt = _adamw(student, optimizer)

    def f_backward(s):
        s.pop("loss").backward()
        return s

    def f_optimizer(s):
        opt.step()
        opt.zero_grad(set_to_none=True)
        return s

    fns = dict(teacher=f_teacher, mask=f_mask, forward=f_forward, backward=f_backward, optimizer=f_optimizer)
    info["student_params"] = sum(p.numel() for p in student.parameters())
    info["teacher_params"] = 0 if teacher is None else sum(p.numel() for p in teacher.parameters())
    info["teacher_weights_mib"] = (
        0.0 if teacher is None else sum(p.numel() * p.element_size() for p in teacher.parameters()) / 2**20
    )
    return student, teacher, opt, video, fns, info


# ------------------------------------------------------------------------------------------------------------------
# Worker: one configuration, one batch size, in a fresh process
# ------------------------------------------------------------------------------------------------------------------
def worker(args) -> None:
    import gc

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    student, teacher, opt, video, fns, info = build(args.config, args.batch_size, args.official_repo, args.optimizer)
    gc.collect()
    build_peak = peak_kb()
    rss_built = rss_kb()

    if args.profile:
        profile_step(fns, args)
        return

    reset_ok = True
    step_records = []
    for i in range(args.warmup + args.steps):
        state: dict = {}
        rec = {"timed": i >= args.warmup}
        peak = 0
        for phase in PHASES:
            reset_ok &= reset_peak()
            rss0 = rss_kb()
            t0 = time.perf_counter()
            state = fns[phase](state)
            rec[phase] = time.perf_counter() - t0
            p = peak_kb()
            peak = max(peak, p)
            rec[phase + "_peak_kb"] = p
            if phase == "teacher":
                rec["teacher_fwd_kb"] = p - rss0
        rec["step"] = sum(rec[ph] for ph in PHASES)
        rec["peak_kb"] = peak
        step_records.append(rec)
        del state
    if not reset_ok:  # fall back on the lifetime high-water mark
        for rec in step_records:
            rec["peak_kb"] = maxrss_kb()
    result = dict(
        config=args.config,
        batch_size=args.batch_size,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        steps=[r for r in step_records if r["timed"]],
        step_peak_mib=(max(r["peak_kb"] for r in step_records) - rss_built) / 1024,
        phase_peak_mib={ph: (max(r[ph + "_peak_kb"] for r in step_records) - rss_built) / 1024 for ph in PHASES},
        teacher_fwd_mib=max(r["teacher_fwd_kb"] for r in step_records) / 1024,
        rss_built_mib=rss_built / 1024,
        proc_peak_mib=max(build_peak, max(r["peak_kb"] for r in step_records)) / 1024,
        peak_reset=reset_ok,
        **info,
    )
    with open(args.result_file, "w") as f:
        json.dump(result, f)


def profile_step(fns: dict, args) -> None:
    """One warm-up step, then one step under torch.profiler; print top ops by self CPU time and by self CPU memory."""
    profile_phases(fns, PHASES, f"{args.config} batch {args.batch_size}", rows=args.profile_rows,
                   profile_memory=True, record_shapes=args.record_shapes)


# ------------------------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------------------------
def _worker_cmd(args, name: str, batch: int) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", "--config", name, "--batch_size", str(batch),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--optimizer", args.optimizer]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.official_repo:
        cmd += ["--official_repo", args.official_repo]
    return cmd


def _env(mmap_threshold: int | None = None) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore", TRANSFORMERS_VERBOSITY="error")
    if mmap_threshold:  # glibc: blocks >= this size are mmap'ed and unmapped on free, so RSS follows live memory
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    return env


def run_one(args, name: str, batch: int) -> dict:
    return run_worker(_worker_cmd(args, name, batch), f"{name} batch {batch}", env=_env(args.mmap_threshold),
                      cwd=str(REPO_ROOT))  # fmt: skip


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(s[key] for r in runs for s in r["steps"])


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}x"


def summarize(results: dict, names: list[str], batch_sizes: list[int]) -> tuple[str, str, dict]:
    """-> (time table, memory table, numbers) in markdown."""
    med = {(n, b): _median(runs, "step") for (n, b), runs in results.items()}
    time_lines = [
        "| configuration | batch | visible / all tokens | step s (median) | min - max | n | teacher s | mask s | fwd s "
        "| bwd s | opt s | vs official | vs VideoMAE-SDPA |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in batch_sizes:
        for n in names:
            runs = results.get((n, b))
            if not runs:
                continue
            steps = [s["step"] for r in runs for s in r["steps"]]
            ph = {p: _median(runs, p) for p in PHASES}
            r0 = runs[0]
            time_lines.append(
                f"| {n} | {b} | {r0['visible']} / {r0['tokens']} | {med[(n, b)]:.2f} "
                f"| {min(steps):.2f} - {max(steps):.2f} "
                f"| {len(steps)} | {ph['teacher']:.2f} | {ph['mask']:.3f} | {ph['forward']:.2f} | {ph['backward']:.2f} "
                f"| {ph['optimizer']:.2f} | {_ratio(med[(n, b)], med.get((OFFICIAL, b)))} "
                f"| {_ratio(med[(n, b)], med.get((VIDEOMAE_SDPA, b)))} |"
            )

    peak = {(n, b): statistics.median(r["step_peak_mib"] for r in runs) for (n, b), runs in results.items()}
    b_lo, b_hi = (min(batch_sizes), max(batch_sizes)) if len(batch_sizes) > 1 else (None, None)

    def per_sample(n):
        if b_lo is None or (n, b_lo) not in peak or (n, b_hi) not in peak:
            return None
        return (peak[(n, b_hi)] - peak[(n, b_lo)]) / (b_hi - b_lo)

    star = "" if all(r["peak_reset"] for runs in results.values() for r in runs) else "*"
    cols = " | ".join(f"step peak b{b} (MiB)" for b in batch_sizes)
    mem_lines = [
        f"| configuration | {cols} | per-sample activations (MiB) | vs VideoMAE-eager | vs official "
        "| teacher weights (MiB) "
        f"| teacher fwd b{batch_sizes[0]} (MiB) | proc peak b{batch_sizes[-1]} (MiB) |",
        "|---|" + "---:|" * (len(batch_sizes) + 6),
    ]
    for n in names:
        if not any((n, b) in results for b in batch_sizes):
            continue
        ps = per_sample(n)
        cells = " | ".join(f"{peak[(n, b)]:.0f}{star}" if (n, b) in peak else "-" for b in batch_sizes)
        first = next(results[(n, b)] for b in batch_sizes if (n, b) in results)
        last = next(results[(n, b)] for b in reversed(batch_sizes) if (n, b) in results)
        tfwd = statistics.median(r["teacher_fwd_mib"] for r in first)
        mem_lines.append(
            f"| {n} | {cells} | {'-' if ps is None else f'{ps:.0f}'} | {_ratio(ps, per_sample(VIDEOMAE_EAGER))} "
            f"| {_ratio(ps, per_sample(OFFICIAL))} | {first[0]['teacher_weights_mib']:.0f} | {tfwd:.0f} "
            f"| {statistics.median(r['proc_peak_mib'] for r in last):.0f} |"
        )
    numbers = dict(median=med, peak=peak, per_sample={n: per_sample(n) for n in names})
    return "\n".join(time_lines) + "\n", "\n".join(mem_lines) + "\n", numbers


def targets(numbers: dict, batch_sizes: list[int]) -> str:
    """Where UMT stands against the project's targets (reported, never asserted)."""
    med, ps = numbers["median"], numbers["per_sample"]
    lines = []
    for b in batch_sizes:
        for n in ("umt-sdpa-tbf16", "umt-sdpa-tfp32", "umt-sdpa-amp", "umt-cpubf16-amp"):
            if (n, b) not in med:
                continue
            if (OFFICIAL, b) in med:
                ratio = med[(n, b)] / med[(OFFICIAL, b)]
                lines.append(f"- batch {b}: {n} / official step time = {ratio:.2f} "
                             "(target <= 0.35; issue 19, bf16 student and teacher: <= 0.25)")
            if (VIDEOMAE_SDPA, b) in med:
                ratio = med[(n, b)] / med[(VIDEOMAE_SDPA, b)]
                lines.append(f"- batch {b}: {n} / videomae-sdpa step time = {ratio:.2f} (target < 1)")
    for n in ("umt-sdpa-tbf16", "umt-eager-tbf16"):
        if ps.get(n) is not None and ps.get(VIDEOMAE_EAGER):
            ratio = ps[n] / ps[VIDEOMAE_EAGER]
            lines.append(f"- {n} per-sample activations / videomae-eager = {ratio:.2f} (target <= 0.36)")
    return "\n".join(lines) + ("\n" if lines else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=None, help="subset (default: all)")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per subprocess (default 3)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed steps first (default 1; keep >= 1 for the memory numbers: the first step "
                             "allocates AdamW state and oneDNN scratch)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved subprocesses per configuration (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--optimizer", choices=("fused", "foreach", "loop"), default="fused",
                        help="AdamW implementation for every row (default fused, as transformers.Trainer)")  # fmt: skip
    parser.add_argument("--official_repo", default=os.environ.get("UMT_OFFICIAL_REPO"),
                        help="official UMT checkout (default $UMT_OFFICIAL_REPO); without it that row is "
                             "skipped")  # fmt: skip
    parser.add_argument("--out", default=None, help="also write the tables (markdown) to this file")
    parser.add_argument("--mmap_threshold", type=int, default=None,
                        help="set glibc MALLOC_MMAP_THRESHOLD_ (bytes) in the workers: freed large blocks return "
                             "to the OS, so RSS tracks live memory (less allocator noise in the memory columns; "
                             "slower steps)")  # fmt: skip
    parser.add_argument("--profile", default=None, choices=list(CONFIGS), help="profile one step of this config")
    parser.add_argument("--profile_rows", type=int, default=20)
    parser.add_argument("--record_shapes", action="store_true", help="with --profile: group ops by input shape")
    add_worker_arguments(parser)  # internal: one worker subprocess
    args = parser.parse_args()

    if args._worker:
        worker(args)
        return
    if args.profile:
        for b in args.batch_sizes:
            cmd = _worker_cmd(args, args.profile, b) + ["--profile", args.profile,
                                                               "--profile_rows", str(args.profile_rows)]  # fmt: skip
            if args.record_shapes:
                cmd.append("--record_shapes")
            subprocess.run(cmd, env=_env(args.mmap_threshold), cwd=str(REPO_ROOT), check=True)
        return

    def official_available() -> None:
        if not args.official_repo:
            raise FileNotFoundError("no --official_repo / $UMT_OFFICIAL_REPO")
        if not (Path(args.official_repo) / "single_modality/models/modeling_pretrain_umt.py").is_file():
            raise FileNotFoundError(f"no single_modality/models/modeling_pretrain_umt.py under {args.official_repo}")

    names = without_unavailable(args.configs or list(CONFIGS), OFFICIAL, official_available)

    jobs = [(n, b) for b in args.batch_sizes for n in names]
    started = datetime.datetime.now().astimezone()
    load0 = load_average()
    print(f"# {len(jobs)} jobs x {args.rounds} rounds, warmup {args.warmup}, steps {args.steps}; cpu_count "
          f"{os.cpu_count()}, load avg {load0}", flush=True)  # fmt: skip

    def report(res: dict) -> str:
        steps = ", ".join(f"{s['step']:.2f}" for s in res["steps"])
        phase_peaks = " ".join(f"{ph} {v:.0f}" for ph, v in res["phase_peak_mib"].items())
        return (f"step s [{steps}] teacher {statistics.median(s['teacher'] for s in res['steps']):.2f} s, "
                f"step peak {res['step_peak_mib']:.0f} MiB (by phase: {phase_peaks}), load {os.getloadavg()[0]:.1f}")

    results = run_interleaved(jobs, args.rounds, lambda name, batch: run_one(args, name, batch), report)
    load1 = load_average()

    time_table, mem_table, numbers = summarize(results, names, args.batch_sizes)
    any_res = next(iter(results.values()))[0]
    meta = (
        f"date {started:%Y-%m-%d %H:%M %Z}; torch {any_res['torch']}; torch threads {any_res['threads']}; cpu_count "
        f"{os.cpu_count()}; {platform.processor() or platform.machine()}; optimizer AdamW ({args.optimizer}); "
        f"MALLOC_MMAP_THRESHOLD_ {args.mmap_threshold or 'glibc default (dynamic)'}; "
        f"load avg before {load0} after {load1}\n"
        f"command: {command_line()}\n"
        f"time: median over {args.rounds} round(s) x {args.steps} timed steps after {args.warmup} warm-up step(s); "
        f"memory: step peak = max RSS during the steps - RSS after building models, optimizer and input\n"
    )
    text = meta + "\n" + time_table + "\n" + mem_table + "\n" + targets(numbers, args.batch_sizes)
    emit_report(text, args.out)


if __name__ == "__main__":
    main()
