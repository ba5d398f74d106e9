"""The evaluation pre-processing never allocates more than its output needs: an 8-frame 16000 x 2 clip (a 3 KB
file) is processed with a peak of well under 100 MB (the short-side-first resize would have asked for 9.6 GB), its
views match the full resize inside each view, and absurd requests fail with a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import processors.transforms as transforms
from processors.transforms import eval_views

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter. torch's CPU allocations are invisible to tracemalloc, so the bound is set on the
# process itself: after a warm-up, its address space may grow by at most 100 MB (RLIMIT_AS), and any larger
# allocation fails. The same run with the crop-first path switched off must fail, so the bound is known to bite.
_MEASURE = r"""
import json, os, resource, sys
import numpy as np, torch
import processors.transforms as transforms
from processors.synthetic import encode_mp4
from processors.video_io import read_video
from processors.video_processing_umt import UMTVideoProcessor

path, crop_first = sys.argv[1], sys.argv[2] == "crop_first"
encode_mp4(np.tile(np.arange(8, dtype=np.uint8)[:, None, None, None] * 30, (1, 2, 16000, 3)), path, fps=8)
if not crop_first:
    transforms.CROP_FIRST_RATIO = float("inf")
processor = UMTVideoProcessor()
small = UMTVideoProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})
small.views(read_video(path, range(8))[0][:, :, :, :64], 1, 3)  # load every code path, with a tiny output
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + 100 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    frames = read_video(path, range(8))[0]
    views = processor.views(frames, 1, 3)
except (MemoryError, RuntimeError) as error:
    print(json.dumps({"refused": f"{type(error).__name__}: {error}"[:300]}))
    sys.exit(0)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
print(json.dumps({"file_bytes": os.path.getsize(path), "frames": list(frames.shape), "views": list(views.shape),
                  "finite": bool(torch.isfinite(views).all()), "grown_kib": grown}))
"""


def _measure(tmp_path: Path, mode: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path / f"{mode}.mp4"), mode], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the address space size from /proc (Linux)")
def test_an_8_frame_16000x2_clip_is_processed_under_100_mb(tmp_path):
    result = _measure(tmp_path, "crop_first")
    assert "refused" not in result, result
    assert result["file_bytes"] < 20_000 and result["frames"] == [8, 3, 2, 16000]
    assert result["views"] == [3, 8, 3, 224, 224] and result["finite"]
    assert result["grown_kib"] < 100 * 1024, result
    # The short-side-first resize of the same clip (9.6 GB of uint8 frames) does not fit in those 100 MB.
    assert "refused" in _measure(tmp_path, "full_resize")


@pytest.mark.parametrize("shape", [(4, 3, 20, 400), (4, 3, 400, 20), (4, 3, 37, 333)])
@pytest.mark.parametrize("crops", [1, 3])
def test_cropping_first_gives_the_full_resize_inside_each_view(monkeypatch, shape, crops):
    video = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(transforms, "CROP_FIRST_RATIO", 1e9)  # always the full resize
    full = eval_views(video, 32, (32, 32), num_spatial_crops=crops)
    monkeypatch.setattr(transforms, "CROP_FIRST_RATIO", 0)  # always crop first
    first = eval_views(video, 32, (32, 32), num_spatial_crops=crops)
    assert first.shape == full.shape == (crops, 4, 3, 32, 32)
    torch.testing.assert_close(first[..., 3:-3, 3:-3], full[..., 3:-3, 3:-3], atol=0, rtol=0)
    assert (first - full).abs().mean() < 0.02  # only the antialiasing reach at a view's edges differs


def test_ordinary_aspect_ratios_keep_the_full_resize(monkeypatch):
    calls = []
    monkeypatch.setattr(transforms, "_crop_then_resize", lambda *a: calls.append(a))
    eval_views(torch.zeros(2, 3, 36, 64, dtype=torch.uint8), 32, (32, 32), num_spatial_crops=3)  # 16:9
    assert calls == []


def test_absurd_requests_fail_with_the_sizes_named():
    with pytest.raises(ValueError, match=r"would take 35\.9 GiB for 8 frames .*give a crop_size"):
        eval_views(torch.zeros(8, 3, 2, 16000, dtype=torch.uint8), 224, None)
    with pytest.raises(ValueError, match=r"height and width >= 1, got \(0, 5\)"):
        eval_views(torch.zeros(8, 3, 0, 5, dtype=torch.uint8), 224, (224, 224))
