"""Time the UMT teacher forward: ours (SDPA + one cls-attention row) vs the official clip.py vs open_clip.

    .venv/bin/python benchmarks/bench_teacher.py                        # ViT-B/16, 2 videos x 8 frames, 224 px
    UMT_OFFICIAL_REPO=/path/to/unmasked_teacher .venv/bin/python benchmarks/bench_teacher.py --repeats 5

All models hold the same random ViT-B/16 weights (no CLIP download needed; speed does not depend on them).
What each row computes:
  - ours: K=6 projected intermediate layers + last-block cls attention (everything UMT needs); "bf16 autocast" is
    fp32 weights under autocast (the old path), "bf16 weights" what `autocast_dtype=torch.bfloat16` builds now,
    with SDPA or `umt_cpu_bf16` attention;
  - official clip.py: the same outputs (its `need_weights=True` last block builds the full L x L maps);
    its `torch.cuda.amp.autocast()` is a no-op on a CPU, so "as released" runs in fp32 here;
  - open_clip encode_image: the pooled embedding only, a lower bound for a forward over the same frames.
One warm-up, then --repeats rounds in which every row runs once (interleaved); median and min reported.
Timings on a shared VM vary: compare rows of one run, not runs.
"""

import argparse
import importlib.util
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from modeling_umt.teachers import UMTTeacher  # noqa: E402


def timed(fns: dict, repeats: int) -> dict:
    """name -> (median, min) seconds. Runs are interleaved round-robin so that load drifting on a shared
    machine hits every row alike instead of whichever happened to run last."""
    for fn in fns.values():
        fn()  # warm-up: oneDNN primitive creation, allocator
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def autocast(dtype):
    return torch.autocast("cpu", dtype=dtype) if dtype is not None else nullcontext()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    video = torch.randn(args.batch, args.frames, 3, args.size, args.size)  # (B, T, C, H, W)

    official = None
    repo = os.environ.get("UMT_OFFICIAL_REPO")
    if repo:
        spec = importlib.util.spec_from_file_location("official_clip", Path(repo) / "single_modality/models/clip.py")
        official_clip = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(official_clip)
        official = official_clip.clip_b16(pretrained=False, clip_norm_type="l2", input_resolution=224,
                                          return_attn=True, clip_return_layer=6).eval()
        state = official.state_dict()
    import open_clip

    clip = open_clip.create_model("ViT-B-16-quickgelu").eval()  # random weights, explicitly (benchmark)
    if official is not None:  # the same weights everywhere
        clip.visual.load_state_dict({**state, "conv1.weight": state["conv1.weight"][:, :, 0]})
    ours = UMTTeacher.from_open_clip(clip, num_return_layers=6, normalize=True)
    # What `--teacher_autocast bf16` builds now: bf16 weights (LayerNorms fp32), SDPA or umt_cpu_bf16 attention.
    ours_bf16 = {impl: UMTTeacher.from_open_clip(clip, num_return_layers=6, normalize=True,
                                                 autocast_dtype=torch.bfloat16, attn_implementation=impl)
                 for impl in ("sdpa", "umt_cpu_bf16")}  # fmt: skip

    frames = video.flatten(0, 1)

    def run_ours(dtype):
        ours.autocast_dtype = dtype
        ours(video)

    def run_official(dtype):
        with torch.no_grad(), autocast(dtype):
            official(video.permute(0, 2, 1, 3, 4))  # official layout (B, C, T, H, W)

    def run_open_clip(dtype):
        with torch.no_grad(), autocast(dtype):
            clip.encode_image(frames)

    fns = {}
    for dtype, tag in ((None, "fp32"), (torch.bfloat16, "bf16 autocast")):
        fns[f"ours ({tag})"] = lambda d=dtype: run_ours(d)
        if official is not None:
            fns[f"official clip.py ({tag})"] = lambda d=dtype: run_official(d)
        fns[f"open_clip encode_image ({tag}, pooled only)"] = lambda d=dtype: run_open_clip(d)
    for impl, teacher in ours_bf16.items():
        fns[f"ours (bf16 weights, {impl})"] = lambda t=teacher: t(video)
    results = timed(fns, args.repeats)

    base_name = "official clip.py (fp32)" if official is not None else "ours (fp32)"
    base = results[base_name][0]
    n = args.batch * args.frames
    print(f"\nViT-B/16 teacher, {args.batch} videos x {args.frames} frames at {args.size} px, CPU, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {args.repeats} interleaved runs")
    w = max(map(len, results))
    print(f"| {'model':<{w}} | median (s) | min (s) | frames/s | vs {base_name} |")
    print(f"|{'-' * (w + 2)}|-----------:|--------:|---------:|{'-' * (len(base_name) + 4)}:|")
    r = len(base_name) + 2  # the ratio column is as wide as its "vs <base>" header
    for name, (median, best) in results.items():
        print(f"| {name:<{w}} | {median:10.2f} | {best:7.2f} | {n / median:8.1f} | {base / median:{r}.2f}x |")


if __name__ == "__main__":
    main()
