"""Pictures of a UMT run: loss curves per stage and loss term, and the semantic mask on a few clips.

From Python:

    from modeling_umt.visualization import load_clips, plot_loss_curves, plot_semantic_masks
    from modeling_umt.teachers import build_teacher

    plot_loss_curves({"Stage 1": "outputs/stage1", "Stage 2": "outputs/stage2"}, "curves.png")
    clips = load_clips(["a.mp4", "b.mp4"], num_frames=8, image_size=224)          # (B, T, 3, 224, 224)
    teacher = build_teacher("clip_b16", pretrained="openai", num_return_layers=1)  # or a local weights file
    plot_semantic_masks(clips, teacher, "masks.png", mask_ratio=0.8)

From the shell:

    python -m modeling_umt.visualization curves --run "Stage 1=outputs/stage1" --run "Stage 2=outputs/stage2" \
        --output curves.png
    python -m modeling_umt.visualization masks --videos a.mp4 b.mp4 --teacher clip_b16 --teacher_pretrained openai \
        --image_size 224 --output masks.png

A run directory is a `Trainer` output directory: its `trainer_state.json`, or that of its newest `checkpoint-*` while a
run is unfinished. The mask figure shows, per clip, the frames with the tokens the teacher keeps (semantic masking:
drawn in proportion to its class-token attention, `masking.semantic_mask`) at full brightness and the dropped ones
dimmed, and below them the teacher's class-token attention as a heat map.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from processors.decoding import VideoClipDecoder
from processors.fileio import atomic_file
from processors.transforms import EvalTransform

from .masking import semantic_mask
from .teachers import build_teacher

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Log keys drawn as loss terms: the total and every named part (Stage 2's loss_vtc ..., Stage 1's uta_layer_k).
_TERM = re.compile(r"^(loss|eval_loss|loss_\w+|uta_layer_\d+)$")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, output_path: str | os.PathLike) -> Path:
    """Write the figure atomically (`processors.fileio.atomic_file`): no half-written PNG is ever left behind."""
    output = Path(output_path)
    with atomic_file(output) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    return output


# ----------------------------------------------------------------------------------------------------------------
# Loss curves
# ----------------------------------------------------------------------------------------------------------------
def read_log_history(run_dir: str | os.PathLike) -> list[dict]:
    """The `log_history` of a Trainer run: `<run_dir>/trainer_state.json`, else that of its newest checkpoint, or
    the file itself when `run_dir` is a trainer_state.json. Raises FileNotFoundError naming what was looked for."""
    run_dir = str(run_dir)
    candidates = [run_dir] if run_dir.endswith(".json") else [os.path.join(run_dir, "trainer_state.json")]
    checkpoints = glob.glob(os.path.join(run_dir, "checkpoint-*", "trainer_state.json"))
    checkpoints.sort(key=lambda p: int(re.search(r"checkpoint-(\d+)", p).group(1)), reverse=True)
    for path in candidates + checkpoints:
        if os.path.isfile(path):
            with open(path) as f:
                return json.load(f)["log_history"]
    raise FileNotFoundError(f"No trainer_state.json in {run_dir!r} or its checkpoint-* folders: is it a Trainer run?")


def loss_terms(history: Sequence[Mapping]) -> dict[str, tuple[list[int], list[float]]]:
    """{term: (steps, values)} for every loss-like key logged in `history` (see `_TERM`), in logging order."""
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for entry in history:
        for key, value in entry.items():
            if _TERM.match(key) and isinstance(value, (int, float)):
                steps, values = curves.setdefault(key, ([], []))
                steps.append(int(entry.get("step", len(steps))))
                values.append(float(value))
    return curves


def plot_loss_curves(runs: Mapping[str, str | os.PathLike], output_path: str | os.PathLike, log_scale: bool = True) -> Path:
    """One panel per run ({title: run_dir}), one line per loss term; returns the PNG path. `log_scale`: a log y axis
    for panels whose losses span more than a factor of 5."""
    if not runs:
        raise ValueError("`runs` must name at least one run directory.")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 3.8), squeeze=False)
    for ax, (title, run_dir) in zip(axes[0], runs.items()):
        curves = loss_terms(read_log_history(run_dir))
        if not curves:
            raise ValueError(f"{run_dir!r} logged no loss: nothing to plot for {title!r}.")
        for key, (steps, values) in curves.items():
            style = dict(linewidth=2.2, color="black") if key == "loss" else dict(linewidth=1.2)
            if key == "eval_loss":
                style = dict(marker="o", linestyle="--")
            ax.plot(steps, values, label=key, **style)
        everything = [v for _, values in curves.values() for v in values]
        if log_scale and min(everything) > 0 and max(everything) / min(everything) > 5:  # log only where it helps
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = _save(fig, output_path)
    plt.close(fig)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Semantic mask
# ----------------------------------------------------------------------------------------------------------------
def load_clips(videos: Sequence[str | os.PathLike], num_frames: int = 8, image_size: int = 224) -> torch.Tensor:
    """Decode videos (paths or URLs) into normalised clips (B, T, 3, S, S): `num_frames` frames from the middle of
    each segment, short side resized to `image_size` and centre-cropped, ImageNet mean/std (the evaluation pipeline)."""
    decoder = VideoClipDecoder(num_frames, "middle", EvalTransform(image_size))
    return torch.stack([decoder.decode(str(v)) for v in videos])


def teacher_mask(
    pixel_values: torch.Tensor, teacher, mask_ratio: float = 0.8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's class-token attention (B, T, h, w) and the semantic mask (B, T, h, w), True = dropped, on the
    teacher's token grid, for clips (B, T, 3, H, W)."""
    out = teacher(pixel_values)
    attention = out.cls_attention.float()  # (B, T, HW)
    b, t, hw = attention.shape
    side = int(round(hw**0.5))
    if side * side != hw:
        raise ValueError(f"The teacher's token grid ({hw} per frame) is not square.")
    mask = semantic_mask(attention, mask_ratio, generator=torch.Generator().manual_seed(seed))
    return attention.view(b, t, side, side), mask.view(b, t, side, side)


def _to_images(pixel_values: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """(B, T, 3, H, W) normalised -> (B, T, H, W, 3) in [0, 1]."""
    m = torch.tensor(mean).view(1, 1, 3, 1, 1)
    s = torch.tensor(std).view(1, 1, 3, 1, 1)
    return (pixel_values.float().cpu() * s + m).clamp(0, 1).permute(0, 1, 3, 4, 2)


def highlight_kept(images: torch.Tensor, mask: torch.Tensor, dim: float = 0.25) -> torch.Tensor:
    """Frames (B, T, H, W, 3) in [0, 1] with the dropped tokens of `mask` (B, T, h, w), True = dropped, darkened to
    `dim` of their brightness and the kept ones unchanged (the token grid is stretched over the frame)."""
    b, t, h, w, _ = images.shape
    keep = torch.nn.functional.interpolate((~mask).float(), size=(h, w), mode="nearest")  # (B, T, H, W)
    return images * (dim + (1.0 - dim) * keep[..., None])


def plot_semantic_masks(
    pixel_values: torch.Tensor,
    teacher,
    output_path: str | os.PathLike,
    mask_ratio: float = 0.8,
    titles: Sequence[str] | None = None,
    max_frames: int = 8,
    seed: int = 0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    teacher_name: str | None = None,
) -> Path:
    """Draw the semantic mask for clips (B, T, 3, H, W) (ImageNet-normalised, as the student sees them).

    Per clip two rows over (up to `max_frames`) frames: the frame with the kept tokens bright and the dropped ones
    dimmed and outlined grid-wise, then the teacher's class-token attention. Returns the PNG path."""
    if pixel_values.ndim != 5 or pixel_values.shape[2] != 3:
        raise ValueError(f"pixel_values must be (B, T, 3, H, W); got shape {tuple(pixel_values.shape)}")
    attention, mask = teacher_mask(pixel_values, teacher, mask_ratio, seed)
    images = _to_images(pixel_values, mean, std)
    b, t, h, w, _ = images.shape
    frames = list(range(t)) if t <= max_frames else torch.linspace(0, t - 1, max_frames).round().long().tolist()
    shown_all = highlight_kept(images, mask)
    attn_px = torch.nn.functional.interpolate(attention, size=(h, w), mode="nearest")

    plt = _pyplot()
    fig, axes = plt.subplots(2 * b, len(frames), figsize=(1.6 * len(frames), 3.4 * b), squeeze=False)
    kept_per_frame = int((~mask[0, 0]).sum().item())
    for i in range(b):
        label = titles[i] if titles is not None and i < len(titles) else f"clip {i}"
        for j, f in enumerate(frames):
            ax = axes[2 * i, j]
            ax.imshow(shown_all[i, f].numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"{label}\nkept tokens", fontsize=7)
            ax.set_title(f"t={f}", fontsize=7)
            ax = axes[2 * i + 1, j]
            a = attn_px[i, f]
            ax.imshow((a / a.max().clamp_min(1e-12)).numpy(), cmap="magma", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel("teacher [CLS]\nattention", fontsize=7)
    grid = mask.shape[-1]
    name = f" ({teacher_name})" if teacher_name else ""
    fig.suptitle(
        f"Semantic masking{name}: {kept_per_frame} of {grid * grid} tokens kept per frame "
        f"(mask ratio {mask_ratio:g}), drawn in proportion to the teacher's class-token attention",
        fontsize=8,
    )
    fig.tight_layout()
    out = _save(fig, output_path)
    plt.close(fig)
    return out


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    labels, predictions = torch.as_tensor(labels, dtype=torch.long), torch.as_tensor(predictions, dtype=torch.long)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(f"labels and predictions must be two 1-D sequences of one length, got {tuple(labels.shape)} "
                         f"and {tuple(predictions.shape)}")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if len(values) and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must be class ids in 0..{num_classes - 1}, got {values.min()}..{values.max()}")
    return torch.bincount(labels * num_classes + predictions, minlength=num_classes**2).view(num_classes, num_classes)


def plot_confusion_matrix(matrix: torch.Tensor, class_names: Sequence[str], output_path: str | os.PathLike,
                          title: str = "") -> Path:
    """Draw a (K, K) confusion matrix (rows: true class, columns: predicted), each row as shares of its clips, the
    counts written in the cells. Returns the PNG path."""
    matrix = torch.as_tensor(matrix)
    k = len(class_names)
    if tuple(matrix.shape) != (k, k):
        raise ValueError(f"matrix must be ({k}, {k}) for {k} class names, got {tuple(matrix.shape)}")
    shares = matrix.float() / matrix.sum(1, keepdim=True).clamp_min(1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(0.55 * k + 2.5, 0.55 * k + 2))
    ax.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = matrix.diag().sum().item() / max(matrix.sum().item(), 1)
    ax.set_title(f"{title}{' - ' if title else ''}top-1 {100 * accuracy:.1f}% on {int(matrix.sum())} clips", fontsize=8)
    fig.tight_layout()
    out = _save(fig, output_path)
    plt.close(fig)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------
def _parse_run(text: str) -> tuple[str, str]:
    title, sep, path = text.partition("=")
    return (title, path) if sep else (os.path.basename(os.path.normpath(text)), text)


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m modeling_umt.visualization", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    curves = sub.add_parser("curves", help="loss curves of Trainer runs")
    curves.add_argument("--run", action="append", required=True, type=_parse_run,
                        help="'Title=run_dir' (or just run_dir); repeat for several panels")
    curves.add_argument("--output", default="loss_curves.png")
    curves.add_argument("--linear", action="store_true", help="linear instead of log y axis")
    masks = sub.add_parser("masks", help="the teacher's semantic mask on a few clips")
    masks.add_argument("--videos", nargs="+", required=True, help="video files or URLs")
    masks.add_argument("--teacher", default="clip_b16",
                       help="'clip_b16', 'clip_l14', 'hf:<dir or id>', an open_clip name, 'tiny-random' "
                            "(see modeling_umt.teachers.registered_teachers())")
    masks.add_argument("--teacher_pretrained", default=None, help="open_clip tag or local weights file")
    masks.add_argument("--image_size", type=int, default=224, help="clip resolution fed to the teacher")
    masks.add_argument("--patch_size", type=int, default=16,
                       help="student patch size: sets the token grid (image_size/patch) of 'tiny-random*' and 'hf:'")
    masks.add_argument("--num_frames", type=int, default=8)
    masks.add_argument("--mask_ratio", type=float, default=0.8)
    masks.add_argument("--seed", type=int, default=0)
    masks.add_argument("--output", default="semantic_masks.png")
    args = parser.parse_args(argv)
    if args.command == "curves":
        out = plot_loss_curves(dict(args.run), args.output, log_scale=not args.linear)
    else:
        teacher = build_teacher(args.teacher, args.teacher_pretrained, num_return_layers=1,
                                image_size=args.image_size, patch_size=args.patch_size)
        clips = load_clips(args.videos, args.num_frames, args.image_size)
        out = plot_semantic_masks(clips, teacher, args.output, args.mask_ratio,
                                  titles=[os.path.basename(str(v)) for v in args.videos], seed=args.seed,
                                  teacher_name=args.teacher)
    print(f"wrote {out}")
    return out


__all__ = ["confusion_matrix", "highlight_kept", "load_clips", "loss_terms", "plot_confusion_matrix", "plot_loss_curves",
           "plot_semantic_masks", "read_log_history", "teacher_mask"]

if __name__ == "__main__":
    main()
