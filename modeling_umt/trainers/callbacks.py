"""Trainer callbacks of the UMT trainers."""

from __future__ import annotations

import math

from transformers import TrainerCallback


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


__all__ = ["DecoderEpochCallback"]
