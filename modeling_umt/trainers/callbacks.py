"""Trainer callbacks of the UMT trainers."""

from __future__ import annotations

import json
import math
import os
import time

from transformers import TrainerCallback

from processors.fileio import atomic_write_text

PROGRESS_FILE = "progress.json"


class DecoderEpochCallback(TrainerCallback):
    """Keep a seeded clip decoder (e.g. `processors.decoding.VideoClipDecoder`, anything with `set_epoch(int)`) on the
    Trainer's current epoch (set before each epoch's data loader starts, so DataLoader workers, which copy the decoder
    when they start, see it too)."""

    def __init__(self, decoder):
        if not callable(getattr(decoder, "set_epoch", None)):
            raise ValueError(f"`decoder` must have a `set_epoch(epoch)` method, got a {type(decoder).__name__}.")
        self.decoder = decoder

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.decoder.set_epoch(math.floor((state.epoch or 0.0) + 1e-9))


class ProgressFileCallback(TrainerCallback):
    """Keep `<output_dir>/progress.json` up to date while training (main process, at most every `interval` seconds
    and at the end): {"step", "max_steps", "elapsed_s", "seconds_per_step", "eta_s", "done"}. `eta_s` extrapolates
    the steps of this session. A watcher (the main job's status line, a notebook) reads it; the file is written
    atomically, so it is never seen half-written. Every UMT trainer adds it."""

    def __init__(self, interval: float = 2.0):
        self.interval = interval
        self._start = self._last = 0.0
        self._first_step = 0

    def _write(self, args, state, done: bool = False) -> None:
        now = time.time()
        elapsed = now - self._start
        steps = state.global_step - self._first_step
        per_step = elapsed / steps if steps > 0 else None
        remaining = max(state.max_steps - state.global_step, 0)
        progress = {
            "step": state.global_step, "max_steps": state.max_steps, "elapsed_s": round(elapsed, 1),
            "seconds_per_step": None if per_step is None else round(per_step, 4),
            "eta_s": 0.0 if done else (None if per_step is None else round(per_step * remaining, 1)), "done": done,
        }
        os.makedirs(args.output_dir, exist_ok=True)
        atomic_write_text(os.path.join(args.output_dir, PROGRESS_FILE), json.dumps(progress))
        self._last = now

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = self._last = time.time()
        self._first_step = state.global_step
        if state.is_world_process_zero:
            self._write(args, state)

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and time.time() - self._last >= self.interval:
            self._write(args, state)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._write(args, state, done=True)


__all__ = ["DecoderEpochCallback", "PROGRESS_FILE", "ProgressFileCallback"]
