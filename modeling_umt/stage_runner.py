"""Run a graph of training-script stages, several at a time, with one status line a user can watch.

A `Stage` is one script of training_scripts/ with its arguments, the stages it needs first (`after`), the files that
mark it done (`outputs`) and the seconds it is expected to take on the reference machine (`expected_s`, for the
estimate of the remaining time). `run_stages` starts every stage whose inputs are ready, up to `lanes` at a time, each
in its own process with `threads` torch threads (on a small CPU, two one-thread processes beat one two-thread
process for small models), writes each stage's output to `<stage dir>/log.txt`, and prints a status line every
`status_every` seconds:

    [pipeline 04:12] running: stage2 310/800 (1:52 left), finetune 640/1000 (0:41 left) | done 6/11 | ~6 min to go

Step counts come from the `progress.json` every UMT trainer keeps (`modeling_umt.trainers.ProgressFileCallback`).
A stage whose outputs exist is skipped; a failed stage stops new launches, lets the running ones finish (their work
is kept: a rerun resumes them), prints the end of its log and raises `StageFailed`. Ctrl-C stops every child; a
rerun resumes each from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

__all__ = ["Stage", "StageFailed", "run_stages", "format_seconds", "stage_progress"]


@dataclass
class Stage:
    name: str
    script: str  # path of the Python script
    what: str  # one line for the results table
    args: list[str] = field(default_factory=list)
    after: tuple[str, ...] = ()  # stages that must be done first
    outputs: tuple[str, ...] = ("model/config.json",)  # relative to the stage directory; all present = done
    expected_s: float = 60.0  # seconds on the reference machine (2 idle cores), for the remaining-time estimate

    def done(self, stage_dir: str) -> bool:
        return all(os.path.isfile(os.path.join(stage_dir, o)) for o in self.outputs)


class StageFailed(RuntimeError):
    """A stage's script exited with an error; `.stage` names it, `.log` is its log file."""

    def __init__(self, stage: str, returncode: int, log: str):
        super().__init__(f"stage {stage} failed (exit {returncode}); its output is in {log}. Rerun the same command "
                         "once the cause is fixed: finished stages are skipped and interrupted ones resume.")
        self.stage, self.returncode, self.log = stage, returncode, log


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


def stage_progress(stage_dir: str) -> dict | None:
    """The `progress.json` a UMT trainer keeps in its output directory, or None (not started, or not a trainer)."""
    path = os.path.join(stage_dir, "progress.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _tail(path: str, lines: int = 25) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def run_stages(
    stages: Sequence[Stage],
    stage_dirs: dict[str, str],
    extra_args: dict[str, list[str]] | None = None,
    force: Sequence[str] = (),
    lanes: int = 2,
    threads: int = 1,
    status_every: float = 15.0,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    print_fn: Callable[[str], None] = lambda line: print(line, flush=True),
) -> dict[str, float | None]:
    """Run `stages` (see the module docstring); returns {stage name: seconds it ran, None when skipped}."""
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    for stage in stages:
        missing = [a for a in stage.after if a not in names]
        if missing:
            raise ValueError(f"stage {stage.name!r} runs after {missing}, which are not stages ({names})")
    unknown = [f for f in force if f not in names]
    if unknown:
        raise ValueError(f"force={unknown} are not stages; expected some of {names}")
    if lanes < 1 or threads < 1:
        raise ValueError(f"lanes and threads must be >= 1, got lanes={lanes}, threads={threads}")
    extra_args = extra_args or {}
    seconds: dict[str, float | None] = {}
    pending = []
    for stage in stages:
        if stage.done(stage_dirs[stage.name]) and stage.name not in force:
            print_fn(f"[pipeline] {stage.name}: outputs in {stage_dirs[stage.name]} exist, skipped")
            seconds[stage.name] = None
        else:
            pending.append(stage)
    running: dict[str, tuple[subprocess.Popen, float, Stage, object]] = {}
    start = last_status = time.time()
    failure: StageFailed | None = None
    child_env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    try:
        while pending or running:
            if failure is None:
                for stage in list(pending):
                    if len(running) >= lanes:
                        break
                    if any(a not in seconds for a in stage.after):
                        continue
                    stage_dir = stage_dirs[stage.name]
                    os.makedirs(stage_dir, exist_ok=True)
                    log_path = os.path.join(stage_dir, "log.txt")
                    log = open(log_path, "a")
                    command = [sys.executable, stage.script, "--output_dir", stage_dir, *stage.args,
                               *extra_args.get(stage.name, [])]
                    log.write(f"\n$ {subprocess.list2cmdline(command)}\n")
                    log.flush()
                    print_fn(f"[pipeline {format_seconds(time.time() - start)}] start {stage.name}: "
                             f"{os.path.basename(stage.script)} (log: {log_path})")
                    process = subprocess.Popen(command, cwd=cwd, env=child_env, stdout=log, stderr=subprocess.STDOUT)
                    running[stage.name] = (process, time.time(), stage, log)
                    pending.remove(stage)
                if not running and pending:  # nothing can start: a dependency failed or never ran
                    break
            elif not running:
                break
            time.sleep(0.5)
            for name, (process, started, stage, log) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                log.close()
                del running[name]
                took = time.time() - started
                if code == 0:
                    seconds[name] = took
                    print_fn(f"[pipeline {format_seconds(time.time() - start)}] done {name} in "
                             f"{format_seconds(took)}")
                elif failure is None:
                    log_path = os.path.join(stage_dirs[name], "log.txt")
                    failure = StageFailed(name, code, log_path)
                    print_fn(f"[pipeline] {name} FAILED (exit {code}); the end of {log_path}:\n{_tail(log_path)}")
                    if running:
                        print_fn(f"[pipeline] letting {sorted(running)} finish (a rerun would resume them anyway)")
            if running and time.time() - last_status >= status_every:
                last_status = time.time()
                print_fn(_status_line(start, running, stage_dirs, pending, seconds, len(stages), lanes))
    except KeyboardInterrupt:
        for process, *_ in running.values():
            process.terminate()
        for process, *_ in running.values():
            process.wait()
        print_fn("[pipeline] interrupted: every running stage stopped; rerun the same command to resume them")
        raise
    if failure is not None:
        raise failure
    if pending:
        raise RuntimeError(f"stages {[s.name for s in pending]} could not start: their inputs were not made")
    return seconds


def _status_line(start, running, stage_dirs, pending, seconds, total, lanes) -> str:
    parts, remaining = [], 0.0
    for name, (_, started, stage, _) in running.items():
        progress = stage_progress(stage_dirs[name])
        if progress and progress.get("max_steps"):
            eta = progress.get("eta_s")
            parts.append(f"{name} {progress['step']}/{progress['max_steps']} ({format_seconds(eta)} left)")
            remaining += eta if eta is not None else stage.expected_s
        else:
            parts.append(f"{name} (starting, {format_seconds(time.time() - started)})")
            remaining += max(stage.expected_s - (time.time() - started), 0.0)
    remaining += sum(stage.expected_s for stage in pending)
    estimate = remaining / max(min(lanes, len(running) + len(pending)), 1)
    return (f"[pipeline {format_seconds(time.time() - start)}] running: {', '.join(parts)} | done "
            f"{len(seconds)}/{total} | about {format_seconds(estimate)} to go")
