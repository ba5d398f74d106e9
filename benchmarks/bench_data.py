#!/usr/bin/env python
"""Data-loading throughput: clips per second for decode + sample (+ transform), decord vs PyAV, per worker count.

What it measures
----------------
The training input path of `processors`: `load_video_records` -> `VideoClipDecoder` (open the video, draw
`--num_frames` indices with `--sampling`, decode only those frames) -> optionally the Stage-1 training
transform (GroupMultiScaleCrop + flip to `--size`, ImageNet normalisation) -> `VideoCollator` batches, through a
torch DataLoader with `num_workers` in `--workers`. Two columns per row:

    decode+sample            transform = identity (uint8 frames, no resize): the decoder alone
    decode+sample+transform  the full Stage-1 recipe, what a training step waits for

Each (backend, workers, column) is run `--rounds` times with fresh DataLoaders; rounds are interleaved so a burst
of background load hits all rows alike. The first batch (worker start-up) is not timed; the reported number is the
median over rounds of clips / second over the remaining batches. Nothing is asserted: a benchmark, not a test.

Usage
-----
    python benchmarks/bench_data.py                                   # the default synthetic set (16 f, 64 px)
    python benchmarks/bench_data.py --data /path/to/videos.csv         # any source load_video_records accepts
    python benchmarks/bench_data.py --synthetic_size 224 --synthetic_num_videos 200 --num_clips 160
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from processors.collate import VideoCollator  # noqa: E402
from processors.datasets import load_video_records  # noqa: E402
from processors.decoding import VideoClipDecoder, decode_videos  # noqa: E402
from processors.synthetic import ensure_synthetic_dataset  # noqa: E402
from processors.transforms import Stage1TrainTransform  # noqa: E402
from processors.video_io import available_backends  # noqa: E402


def as_float(video: torch.Tensor) -> torch.Tensor:
    """The "no transform" column: keep the decoded frames, only make them float so batches look alike."""
    return video.float()


def clips_per_second(records, backend, workers, transform, args) -> float:
    decoder = VideoClipDecoder(args.num_frames, args.sampling, transform, backend=backend)
    dataset = decode_videos(records, decoder)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, num_workers=workers, collate_fn=VideoCollator(), shuffle=False
    )
    iterator = iter(loader)
    next(iterator)  # worker start-up and first-batch latency are not throughput
    count, start = 0, time.perf_counter()
    for batch in iterator:
        count += batch["pixel_values"].shape[0]
    elapsed = time.perf_counter() - start
    if decoder.stats.num_skipped:
        print(f"  note: {decoder.stats.num_skipped} clips failed to decode with {backend}", file=sys.stderr)
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="a source for load_video_records; default: the synthetic set")
    parser.add_argument("--split", default="train", help="split of the synthetic set (ignored with --data)")
    parser.add_argument("--synthetic_num_videos", type=int, default=1000)
    parser.add_argument("--synthetic_size", type=int, default=64)
    parser.add_argument("--num_clips", type=int, default=256, help="clips per measurement (after the first batch)")
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--sampling", default="tsn")
    parser.add_argument("--size", type=int, default=224, help="output size of the training transform")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backends", nargs="+", default=["decord", "pyav"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(1)  # one core per process, as in a DataLoader worker; rows then compare fairly
    if args.data is None:
        root = ensure_synthetic_dataset(num_videos=args.synthetic_num_videos, size=args.synthetic_size)
        records = load_video_records(root / "metadata.csv", split=args.split)
        source = f"synthetic ({root}, split {args.split})"
    else:
        records = load_video_records(args.data)
        source = args.data
    records = records.select(range(min(len(records), args.num_clips + args.batch_size)))
    backends = [b for b in args.backends if b in available_backends()]
    transforms = {"decode+sample": as_float, "decode+sample+transform": Stage1TrainTransform(args.size)}

    rows = [(b, w, name) for b in backends for w in args.workers for name in transforms]
    results: dict[tuple, list[float]] = {row: [] for row in rows}
    for round_index in range(args.rounds):
        for row in rows if round_index % 2 == 0 else reversed(rows):
            backend, workers, name = row
            results[row].append(clips_per_second(records, backend, workers, transforms[name], args))

    print(
        f"source: {source}, {len(records)} clips; {args.num_frames} frames ({args.sampling}), batch {args.batch_size}"
    )
    print(f"transform: Stage1TrainTransform({args.size}); torch threads per process: 1; rounds: {args.rounds}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}\n")
    print("| backend | workers | decode+sample (clips/s) | decode+sample+transform (clips/s) |")
    print("|---|---:|---:|---:|")
    for backend in backends:
        for workers in args.workers:
            cells = [statistics.median(results[(backend, workers, name)]) for name in transforms]
            print(f"| {backend} | {workers} | {cells[0]:.1f} | {cells[1]:.1f} |")


if __name__ == "__main__":
    main()
