"""What the benchmark scripts share: process memory (current and peak RSS, a reset of the peak), the driver
(one configuration per fresh worker process, interleaved rounds) and the machine's measured GEMM peak.

Memory: Linux reads /proc/self (`VmRSS`, `VmHWM`, `clear_refs`); elsewhere both fall back to the lifetime peak
(`ru_maxrss`) and the reset reports that it could not happen. The benchmark scripts put this folder on sys.path
before importing it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def maxrss_kb() -> int:
    """The lifetime peak RSS in KiB (Linux units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_kb() -> int:
    """The current RSS in KiB (the lifetime peak where the current value is not available)."""
    rss = _status_kb("VmRSS")
    return rss if rss is not None else maxrss_kb()


def peak_kb() -> int:
    """The RSS high-water mark in KiB since the last `reset_peak` (or since the start)."""
    peak = _status_kb("VmHWM")
    return peak if peak is not None else maxrss_kb()


def reset_peak() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------------------------
# The driver every step benchmark shares: one configuration per fresh worker process, interleaved rounds
# ------------------------------------------------------------------------------------------------------------------
def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """The hidden arguments a benchmark passes to its own worker subprocess."""
    parser.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--batch_size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result_file", help=argparse.SUPPRESS)


def run_worker(cmd: list[str], label: str, env: dict | None = None, cwd: str | None = None) -> dict:
    """Run one worker (`cmd` plus `--result_file <tmp>`) and return the JSON it wrote; RuntimeError with the tail of
    its stderr when it fails."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        result_file = tmp.name
    try:
        proc = subprocess.run(cmd + ["--result_file", result_file], capture_output=True, text=True, env=env, cwd=cwd)
        if proc.returncode != 0:
            raise RuntimeError(f"{label} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
        with open(result_file) as f:
            return json.load(f)
    finally:
        os.unlink(result_file)


def run_interleaved(
    jobs: list[tuple[str, int]],
    rounds: int,
    run: Callable[[str, int], dict],
    report: Callable[[dict], str],
) -> dict[tuple[str, int], list[dict]]:
    """Run every (configuration, batch) job `rounds` times, alternating the order each round so slow drifts of a
    shared machine spread over all configurations. A failing job is reported and skipped: one broken
    configuration must not lose the others. `report(result)` is the progress line of one run."""
    results: dict[tuple[str, int], list[dict]] = {}
    for rnd in range(rounds):
        for name, batch in jobs if rnd % 2 == 0 else jobs[::-1]:
            start = time.perf_counter()
            try:
                result = run(name, batch)
            except RuntimeError as error:
                print(f"round {rnd + 1}/{rounds} {name:18s} batch {batch}: FAILED\n{error}", flush=True)
                continue
            results.setdefault((name, batch), []).append(result)
            print(f"round {rnd + 1}/{rounds} {name:18s} batch {batch}: {report(result)} "
                  f"({time.perf_counter() - start:.0f} s wall)", flush=True)  # fmt: skip
    if not results:
        sys.exit("no configuration ran")
    return results


def load_average() -> tuple[float, float, float] | None:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def command_line() -> str:
    """How this benchmark was started, for the table's header."""
    return "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])


def without_unavailable(names: list[str], name: str, check: Callable[[], None]) -> list[str]:
    """`names` without `name` when `check()` raises FileNotFoundError (e.g. no official checkout), printed as a skip."""
    if name not in names:
        return names
    try:
        check()
    except FileNotFoundError as error:
        print(f"[skip] {name}: {error}", flush=True)
        return [n for n in names if n != name]
    return names


# ------------------------------------------------------------------------------------------------------------------
# The machine's GEMM peak: the denominator of every model-FLOPs utilisation
# ------------------------------------------------------------------------------------------------------------------
def gemm_peak_gflops(dtype, size: int = 2048, repeats: int = 5, threads: int | None = None) -> float:
    """GFLOP/s of the best of `repeats` (size x size) @ (size x size) `torch.mm`s in `dtype` ("fp32", "bf16" or a
    torch dtype) on the CPU, after one warm-up, with `threads` torch threads (default: the current count): what "the
    machine's measured GEMM peak" means in docs/benchmarks.md (2 * size**3 FLOPs per product)."""
    import torch  # the drivers import torch only where they need it

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}.get(dtype, dtype)
    if threads:
        torch.set_num_threads(threads)
    if repeats < 1 or size < 1:
        raise ValueError(f"size and repeats must be >= 1, got size={size}, repeats={repeats}")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(dtype)
    b = torch.randn(size, size, generator=g).to(dtype)
    out = torch.empty(size, size, dtype=dtype)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def profile_phases(fns: dict, phases: list[str], title: str, rows: int = 25, profile_memory: bool = False,
                   record_shapes: bool = False) -> None:
    """One warm-up step (the phase functions `fns[phase](state) -> state`, in `phases` order), then one step under
    torch.profiler; print each phase's CPU total and the top ops by self CPU time (and by self CPU memory with
    `profile_memory`). Shared by the step benchmarks' `--profile`."""
    import torch  # heavy: only the profiling path needs it here
    from torch.profiler import ProfilerActivity, profile, record_function

    state: dict = {}
    for phase in phases:
        state = fns[phase](state)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=profile_memory, record_shapes=record_shapes) as prof:
        state = {}
        for phase in phases:
            with record_function(f"## {phase}"):
                state = fns[phase](state)
    events = prof.key_averages(group_by_input_shape=record_shapes)
    print(f"# profile {title}, threads {torch.get_num_threads()}")
    for e in sorted((e for e in events if e.key.startswith("## ")), key=lambda e: phases.index(e.key[3:])):
        print(f"phase {e.key[3:]:10s} cpu total {e.cpu_time_total / 1e6:7.3f} s")
    print(events.table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=60))
    if profile_memory:
        print(events.table(sort_by="self_cpu_memory_usage", row_limit=rows, max_name_column_width=60))


def emit_report(text: str, out: str | None) -> None:
    """Print a benchmark's report and, with `out`, write it there too."""
    print()
    print(text)
    if out:
        Path(out).write_text(text)
        print(f"wrote {out}")
