#!/usr/bin/env python
"""CPU micro-benchmark of attention alone: torch's SDPA vs `umt_cpu_bf16` (modeling_umt.attention) at UMT's lengths.

Geometry: ViT-B/16 attention, 12 heads of 64, batch `--batch` (default 1), sequence lengths `--lengths` (default
320 = Stage-1 visible tokens of 8 x 224² at 80 % masking, 1568 = 8 x 224², 4608 = 8 x 384² or 16 x 272² ... and 9216
= 16 x 384², i.e. every length UMT runs at). Rows per length:

    sdpa fp32            F.scaled_dot_product_attention on float32 q, k, v (the reference for the diff column)
    sdpa bf16            the same on bfloat16 q, k, v (torch's fused CPU flash kernel)
    umt_cpu_bf16         modeling_umt.attention.chunked_bf16_attention on the same bf16 q, k, v, for each
                         `--block_elements` (score entries per chunk; default the library's default)

Each row: median and min over `--repeats` timed calls after one warm-up, interleaved across rows (every row, then
every row again, ...) so that background load hits all of them alike; GFLOP/s of the model FLOPs
(forward 4 * B * heads * N² * d; with `--backward` forward + backward = 3x that, recomputation not counted); the
utilisation of the machine's GEMM peak in the row's dtype, measured first in the same process
(`_common.gemm_peak_gflops`, 2048³ `torch.mm`); and for the bf16 rows the max |diff| of the output against
`sdpa fp32` on the same inputs.

Usage
-----
    python benchmarks/bench_attention.py --out attention.md                              # the full table
    python benchmarks/bench_attention.py --backward                                      # training: fwd + bwd
    python benchmarks/bench_attention.py --block_elements 1048576 4194304 16777216       # chunk-size sweep
    python benchmarks/bench_attention.py --lengths 320 1568 --repeats 2                  # quick look
Nothing is asserted: this is a benchmark, not a test. On a shared machine compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common.py, also when this file is loaded by path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # modeling_umt from this checkout
from _common import command_line, emit_report, gemm_peak_gflops, load_average  # noqa: E402

from modeling_umt.attention import DEFAULT_BLOCK_ELEMENTS, chunked_bf16_attention, query_chunk_size  # noqa: E402

HEADS, HEAD_DIM = 12, 64
LENGTHS = (320, 1568, 4608, 9216)


def _kernels(block_elements: list[int]) -> dict:
    """name -> (dtype, fn(q, k, v) -> (B, N, H, d) output)."""
    kernels = {
        "sdpa fp32": (torch.float32, lambda q, k, v: F.scaled_dot_product_attention(q, k, v).transpose(1, 2)),
        "sdpa bf16": (torch.bfloat16, lambda q, k, v: F.scaled_dot_product_attention(q, k, v).transpose(1, 2)),
    }
    for be in block_elements:
        name = "umt_cpu_bf16" if len(block_elements) == 1 else f"umt_cpu_bf16 [{be}]"
        kernels[name] = (torch.bfloat16, lambda q, k, v, be=be: chunked_bf16_attention(q, k, v, block_elements=be))
    return kernels


def _call(fn, inputs, grad, backward: bool) -> torch.Tensor:
    if not backward:
        with torch.no_grad():
            return fn(*inputs)
    out = fn(*inputs)
    torch.autograd.backward(out, grad)
    for t in inputs:
        t.grad = None
    return out.detach()


def measure(n: int, kernels: dict, batch: int, repeats: int, backward: bool) -> dict:
    """Time every kernel at length n (interleaved); -> {name: dict(times, diff)}."""
    g = torch.Generator().manual_seed(n)
    base = [torch.randn(batch, HEADS, n, HEAD_DIM, generator=g) for _ in range(3)]
    grad32 = torch.randn(batch, n, HEADS, HEAD_DIM, generator=g) if backward else None
    inputs = {dt: [t.to(dt).requires_grad_(backward) for t in base] for dt in (torch.float32, torch.bfloat16)}
    grads = {dt: None if grad32 is None else grad32.to(dt) for dt in inputs}
    rows = {name: {"times": []} for name in kernels}
    reference = None
    for name, (dt, fn) in kernels.items():  # warm-up, and the outputs for the diff column
        out = _call(fn, inputs[dt], grads[dt], backward).float()
        if name == "sdpa fp32":
            reference = out
        rows[name]["out"] = out
    for name in kernels:
        out = rows[name].pop("out")
        rows[name]["diff"] = None if reference is None or name == "sdpa fp32" else (out - reference).abs().max().item()
    for rnd in range(repeats):
        order = list(kernels) if rnd % 2 == 0 else list(kernels)[::-1]
        for name in order:
            dt, fn = kernels[name]
            start = time.perf_counter()
            _call(fn, inputs[dt], grads[dt], backward)
            rows[name]["times"].append(time.perf_counter() - start)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per row (default 5)")
    parser.add_argument("--backward", action="store_true", help="time forward + backward (training)")
    parser.add_argument("--block_elements", type=int, nargs="+", default=[DEFAULT_BLOCK_ELEMENTS],
                        help=f"umt_cpu_bf16 score entries per chunk; one row each (default {DEFAULT_BLOCK_ELEMENTS})")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    started = datetime.datetime.now().astimezone()
    load0 = load_average()
    peak = {torch.float32: gemm_peak_gflops(torch.float32), torch.bfloat16: gemm_peak_gflops(torch.bfloat16)}
    print(f"GEMM peak (2048³ torch.mm, best of 5): fp32 {peak[torch.float32]:.0f} GFLOP/s, "
          f"bf16 {peak[torch.bfloat16]:.0f} GFLOP/s; threads {torch.get_num_threads()}", flush=True)  # fmt: skip
    kernels = _kernels(args.block_elements)
    lines = [
        "| N | kernel | chunk (queries) | ms (median) | min ms | GFLOP/s | % of GEMM peak | vs sdpa same dtype "
        "| max abs diff vs sdpa fp32 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in args.lengths:
        rows = measure(n, kernels, args.batch, args.repeats, args.backward)
        flops = 4 * args.batch * HEADS * n * n * HEAD_DIM * (3 if args.backward else 1)
        med = {name: statistics.median(r["times"]) for name, r in rows.items()}
        for name, r in rows.items():
            dt = kernels[name][0]
            gflops = flops / med[name] / 1e9
            same = "sdpa fp32" if dt == torch.float32 else "sdpa bf16"
            be = int(name.split("[")[1][:-1]) if "[" in name else DEFAULT_BLOCK_ELEMENTS
            chunk = query_chunk_size(args.batch * HEADS, n, n, be) if name.startswith("umt") else "-"
            diff = "-" if r["diff"] is None else f"{r['diff']:.1e}"
            line = (f"| {n} | {name} | {chunk} | {1e3 * med[name]:.1f} | {1e3 * min(r['times']):.1f} | {gflops:.0f} "
                    f"| {100 * gflops / peak[dt]:.0f} % | {med[name] / med[same]:.2f}x | {diff} |")  # fmt: skip
            lines.append(line)
            print(line, flush=True)
    meta = (
        f"date {started:%Y-%m-%d %H:%M %Z}; torch {torch.__version__}; torch threads {torch.get_num_threads()}; "
        f"cpu_count {os.cpu_count()}; {platform.processor() or platform.machine()}; "
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}; load avg before {load0} after {load_average()}\n"
        f"command: {command_line()}\n"
        f"batch {args.batch}, {HEADS} heads x {HEAD_DIM}; {'forward + backward' if args.backward else 'forward'}; "
        f"median of {args.repeats} interleaved calls after 1 warm-up\n"
        f"GEMM peak (2048³ torch.mm, best of 5): fp32 {peak[torch.float32]:.0f} GFLOP/s, "
        f"bf16 {peak[torch.bfloat16]:.0f} GFLOP/s\n"
    )
    text = meta + "\n" + "\n".join(lines) + "\n"
    emit_report(text, args.out)


if __name__ == "__main__":
    main()
