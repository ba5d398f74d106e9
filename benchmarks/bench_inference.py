#!/usr/bin/env python
"""CPU inference benchmark: UMT (eager / SDPA) vs transformers' VideoMAE vs the official UMT code.

What it measures
----------------
Time per clip (forward time / batch size) and peak memory of a classification forward pass of a ViT-B/16 video model
(hidden 768, 12 layers, 12 heads, MLP 3072, 400 classes) on 8 frames of 224x224, CPU, fp32, eval mode,
`torch.no_grad()`, random weights and random inputs. Configurations:

    umt-eager, umt-sdpa                UMTForVideoClassification (tubelet 1 -> 1568 tokens)
    videomae-t1-eager, videomae-t1-sdpa  VideoMAEForVideoClassification, num_frames=8, tubelet_size=1 (1568 tokens):
                                       the same-size comparison; its SDPA row is the reference of the ratios
    videomae-t2-eager, videomae-t2-sdpa  VideoMAE defaults except num_frames=8 (tubelet 2 -> 784 tokens): context only
    official-eager                     the official `vit_base_patch16_224(all_frames=8, tubelet_size=1,
                                       num_classes=400)`, only when --official_repo / $UMT_OFFICIAL_REPO is set
    umt-sdpa-bf16, umt-cpubf16-bf16,   (not fp32) the model and input in bfloat16 (`.to(torch.bfloat16)`), with SDPA /
    videomae-t1-sdpa-bf16              with `umt_cpu_bf16` attention (modeling_umt.attention)

Utilisation: every row also gets the model FLOPs of its transformer blocks per clip (12 x (24 N D² + 4 N² D): 357
GFLOP at N = 1568) divided by its time, and that as a share of the machine's GEMM peak in the row's dtype, measured
once by the driver with the same thread count (`_common.gemm_peak_gflops`, 2048³ `torch.mm`).

How it measures (robust to a noisy, shared machine)
---------------------------------------------------
* Every (configuration, batch size) runs in fresh Python subprocesses, so allocator state, oneDNN caches and
  memory high-water marks never leak from one configuration to the next.
* Each configuration is run `--rounds` times in separate subprocesses; the rounds are interleaved (every
  configuration once, then every configuration again in reverse order, ...), so a burst of background load hits all
  configurations alike instead of one.
* In each subprocess: build the model, `--warmup` untimed forwards, then `--repeats` timed forwards
  (`time.perf_counter`). The reported time is the median over all timed forwards of all rounds; min and max are
  printed too, so the noise is visible. Nothing is asserted: this is a benchmark, not a test.
* Memory is resident-set size (RSS) read from /proc/self/status, which is honest for torch on CPU (tensor storage
  comes from malloc/mmap, which tracemalloc does not see). Just before the first forward the kernel's RSS high-water
  mark is reset to the current RSS (`echo 5 > /proc/self/clear_refs`); after the last forward "fwd peak" is
  VmHWM - RSS-before, i.e. the extra resident memory the forward passes needed on top of the loaded model and input
  (activations, attention matrices, oneDNN/MKL workspaces). "proc peak" is the process's overall peak RSS
  (Python + torch + model + forwards). If the high-water mark cannot be reset, "fwd peak" falls back to
  lifetime-peak - RSS-before and is marked with "*". Memory is the median over rounds.

Usage
-----
    python benchmarks/bench_inference.py                       # batch 1 and 4, all configurations found
    python benchmarks/bench_inference.py --official_repo /path/to/unmasked_teacher --out results.md
    python benchmarks/bench_inference.py --batch_sizes 1 --repeats 2 --rounds 1 --warmup 1   # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common.py, also when this file is loaded by path
from _common import add_worker_arguments, command_line, gemm_peak_gflops, load_average  # noqa: E402
from _common import run_interleaved, run_worker, without_unavailable  # noqa: E402
from _common import peak_kb, reset_peak, rss_kb  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "videomae-t1-sdpa"
OFFICIAL = "official-eager"

# name -> (family, attention implementation, tubelet size, description)
CONFIGS: dict[str, tuple[str, str, int, str]] = {
    "umt-eager": ("umt", "eager", 1, "UMT eager"),
    "umt-sdpa": ("umt", "sdpa", 1, "UMT SDPA"),
    "videomae-t1-eager": ("videomae", "eager", 1, "VideoMAE eager, tubelet 1"),
    "videomae-t1-sdpa": ("videomae", "sdpa", 1, "VideoMAE SDPA, tubelet 1"),
    "videomae-t2-eager": ("videomae", "eager", 2, "VideoMAE eager, tubelet 2 (default)"),
    "videomae-t2-sdpa": ("videomae", "sdpa", 2, "VideoMAE SDPA, tubelet 2 (default)"),
    OFFICIAL: ("official", "eager", 1, "official UMT code (eager)"),
    "umt-sdpa-bf16": ("umt", "sdpa", 1, "UMT SDPA, bf16 weights and input"),
    "umt-cpubf16-bf16": ("umt", "umt_cpu_bf16", 1, "UMT umt_cpu_bf16 attention, bf16 weights and input"),
    "videomae-t1-sdpa-bf16": ("videomae", "sdpa", 1, "VideoMAE SDPA, tubelet 1, bf16 weights and input"),
}
HIDDEN, LAYERS = 768, 12


def _bf16(name: str) -> bool:
    return name.endswith("-bf16")


def block_gflops(tokens: int) -> float:
    """Model FLOPs of the 12 ViT-B blocks for one clip of `tokens` tokens: Linear 24 N D², attention 4 N² D each."""
    return LAYERS * (24 * tokens * HIDDEN**2 + 4 * tokens**2 * HIDDEN) / 1e9

NUM_FRAMES, IMAGE_SIZE, NUM_CLASSES = 8, 224, 400


# ------------------------------------------------------------------------------------------------------------------
# Worker: one configuration, one batch size, in a fresh process
# ------------------------------------------------------------------------------------------------------------------
def _find_official_finetune(official_repo: str) -> Path:
    root = Path(official_repo)
    for rel in ("single_modality/models/modeling_finetune.py", "models/modeling_finetune.py", "modeling_finetune.py"):
        if (root / rel).is_file():
            return root / rel
    raise FileNotFoundError(f"no single_modality/models/modeling_finetune.py under {official_repo}")


def build_model(name: str, official_repo: str | None):
    """Return (model, make_input(batch) -> tensor, num_tokens)."""
    import torch

    family, impl, tubelet, _ = CONFIGS[name]
    tokens = (NUM_FRAMES // tubelet) * (IMAGE_SIZE // 16) ** 2

    dtype = torch.bfloat16 if _bf16(name) else torch.float32

    def btchw(b):  # (B, T, C, H, W), the transformers video layout
        return torch.randn(b, NUM_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE).to(dtype)

    if family == "umt":
        sys.path.insert(0, str(REPO_ROOT))
        from modeling_umt import UMTConfig, UMTForVideoClassification

        config = UMTConfig.from_preset("umt-b16", num_labels=NUM_CLASSES, num_frames=NUM_FRAMES, image_size=IMAGE_SIZE)
        model = UMTForVideoClassification._from_config(config, attn_implementation=impl).to(dtype)
        return model, btchw, tokens, model.config._attn_implementation
    if family == "videomae":
        from transformers import VideoMAEConfig, VideoMAEForVideoClassification

        config = VideoMAEConfig(
            num_frames=NUM_FRAMES, tubelet_size=tubelet, image_size=IMAGE_SIZE, num_labels=NUM_CLASSES
        )  # ViT-B/16 defaults: 768 / 12 layers / 12 heads / 3072, mean pooling
        model = VideoMAEForVideoClassification._from_config(config, attn_implementation=impl).to(dtype)
        return model, btchw, tokens, model.config._attn_implementation
    if family == "official":
        if not official_repo:
            raise RuntimeError("official-eager needs --official_repo or $UMT_OFFICIAL_REPO")
        path = _find_official_finetune(official_repo)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # timm deprecation / registry-overwrite warnings
            spec = importlib.util.spec_from_file_location("_official_umt_modeling_finetune", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # timm's @register_model looks the module up there
            spec.loader.exec_module(module)
            model = module.vit_base_patch16_224(all_frames=NUM_FRAMES, tubelet_size=1, num_classes=NUM_CLASSES)

        def bcthw(b):  # the official code takes (B, C, T, H, W)
            return torch.randn(b, 3, NUM_FRAMES, IMAGE_SIZE, IMAGE_SIZE)

        return model, bcthw, tokens, "eager"
    raise ValueError(name)


def worker(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, make_input, tokens, impl = build_model(args.config, args.official_repo)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    x = make_input(args.batch_size)
    times = []
    with torch.no_grad():
        rss_before = rss_kb()
        peak_before_reset = peak_kb()
        reset_ok = reset_peak()
        for _ in range(args.warmup):
            out = model(x)
            del out
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = model(x)
            times.append(time.perf_counter() - t0)
            del out
        peak_after = peak_kb()
    result = dict(
        config=args.config,
        batch_size=args.batch_size,
        tokens=tokens,
        attn_implementation=impl,
        params=n_params,
        threads=torch.get_num_threads(),
        times=times,
        fwd_peak_mib=(peak_after - rss_before) / 1024,
        proc_peak_mib=max(peak_before_reset, peak_after) / 1024,
        peak_reset=reset_ok,
        torch=torch.__version__,
    )
    with open(args.result_file, "w") as f:
        json.dump(result, f)


# ------------------------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------------------------
def run_one(args, name: str, batch: int) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--_worker",
        "--config", name,
        "--batch_size", str(batch),
        "--repeats", str(args.repeats),
        "--warmup", str(args.warmup),
    ]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.official_repo:
        cmd += ["--official_repo", args.official_repo]
    env = dict(os.environ, PYTHONWARNINGS="ignore", TRANSFORMERS_VERBOSITY="error")
    return run_worker(cmd, f"{name} batch {batch}", env=env, cwd=str(REPO_ROOT))


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def summarize(results: dict[tuple[str, int], list[dict]], names: list[str], batch_sizes: list[int],
              peaks: dict[str, float] | None = None) -> list[dict]:  # fmt: skip
    """Rows of the table; `peaks` {"fp32": GFLOP/s, "bf16": GFLOP/s} gives the utilisation column."""
    rows = []
    for batch in batch_sizes:
        med = {}
        for name in names:
            runs = results.get((name, batch))
            if runs:
                per_clip = [t / batch for r in runs for t in r["times"]]
                med[name] = statistics.median(per_clip)
        for name in names:
            runs = results.get((name, batch))
            if not runs:
                continue
            per_clip = [t / batch for r in runs for t in r["times"]]
            rows.append(
                dict(
                    config=name,
                    batch=batch,
                    tokens=runs[0]["tokens"],
                    attn=runs[0]["attn_implementation"],
                    median=med[name],
                    min=min(per_clip),
                    max=max(per_clip),
                    n=len(per_clip),
                    vs_ref=med[name] / med[REFERENCE] if REFERENCE in med else None,
                    vs_official=med[name] / med[OFFICIAL] if OFFICIAL in med else None,
                    fwd_peak=statistics.median(r["fwd_peak_mib"] for r in runs),
                    proc_peak=statistics.median(r["proc_peak_mib"] for r in runs),
                    peak_reset=all(r["peak_reset"] for r in runs),
                    gflops=block_gflops(runs[0]["tokens"]) / med[name],
                    gemm_peak=None if peaks is None else peaks["bf16" if _bf16(name) else "fp32"],
                )
            )
    return rows


def markdown_table(rows: list[dict]) -> str:
    head = (
        "| configuration | batch | tokens | s / clip (median) | min - max | n | vs VideoMAE-SDPA (t1) | vs official "
        "| fwd peak RSS (MiB) | proc peak RSS (MiB) | block GFLOP/s | % of GEMM peak |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in rows:
        star = "" if r["peak_reset"] else "*"
        mfu = "-" if not r["gemm_peak"] else f"{100 * r['gflops'] / r['gemm_peak']:.0f} %"
        lines.append(
            f"| {r['config']} | {r['batch']} | {r['tokens']} | {r['median']:.3f} | {r['min']:.2f} - {r['max']:.2f} "
            f"| {r['n']} | {_fmt_ratio(r['vs_ref'])} | {_fmt_ratio(r['vs_official'])} | {r['fwd_peak']:.0f}{star} "
            f"| {r['proc_peak']:.0f} | {r['gflops']:.0f} "
            f"| {mfu} |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards per subprocess (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards per subprocess first (default 1)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved subprocesses per configuration (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument(
        "--official_repo",
        default=os.environ.get("UMT_OFFICIAL_REPO"),
        help="checkout of the official UMT code (default $UMT_OFFICIAL_REPO); without it the official row is skipped",
    )
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=None, help="subset to run")
    parser.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    add_worker_arguments(parser)  # internal: one worker subprocess
    args = parser.parse_args()

    if args._worker:
        worker(args)
        return

    def official_available() -> None:
        if not args.official_repo:
            raise FileNotFoundError("no --official_repo / $UMT_OFFICIAL_REPO")
        _find_official_finetune(args.official_repo)

    names = without_unavailable(args.configs or list(CONFIGS), OFFICIAL, official_available)

    jobs = [(n, b) for b in args.batch_sizes for n in names]
    started = datetime.datetime.now().astimezone()
    load0 = load_average()
    print(
        f"# {len(jobs)} configurations x {args.rounds} rounds, warmup {args.warmup}, repeats {args.repeats}; "
        f"cpu_count {os.cpu_count()}, load avg {load0}",
        flush=True,
    )

    def report(res: dict) -> str:
        times = ", ".join(f"{t:.2f}" for t in res["times"])
        return f"forward s [{times}] fwd peak {res['fwd_peak_mib']:.0f} MiB"

    results = run_interleaved(jobs, args.rounds, lambda name, batch: run_one(args, name, batch), report)
    threads = next(iter(results.values()))[0]["threads"]
    load1 = load_average()

    peaks = {dtype: gemm_peak_gflops(dtype, threads=args.threads) for dtype in ("fp32", "bf16")}
    rows = summarize(results, names, args.batch_sizes, peaks)
    table = markdown_table(rows)
    any_res = next(iter(results.values()))[0]
    meta = (
        f"date {started:%Y-%m-%d %H:%M %Z}; torch {any_res['torch']}; torch threads {threads}; "
        f"cpu_count {os.cpu_count()}; {platform.processor() or platform.machine()}; "
        f"load avg before {load0} after {load1}\n"
        f"command: {command_line()}\n"
        f"GEMM peak (2048³ torch.mm, best of 5, after the runs): fp32 {peaks['fp32']:.0f} GFLOP/s, "
        f"bf16 {peaks['bf16']:.0f} GFLOP/s\n"
        f"time = forward wall time / batch size, median over {args.rounds} rounds x {args.repeats} repeats; "
        f"ratios are median time per clip relative to {REFERENCE} (and {OFFICIAL}) at the same batch size\n"
    )
    print()
    print(meta)
    print(table)
    if args.out:
        Path(args.out).write_text(meta + "\n" + table)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
