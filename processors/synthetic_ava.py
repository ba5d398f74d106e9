"""A synthetic AVA-style action-detection dataset: several actors per clip, each with its own action, boxes on the
keyframe, written in the AVA file layout (so the real AVA readers of `processors.detection` load it).

Each clip is `num_frames` frames of `height` x `width` (wider than high, as AVA frames) with 2-3 textured shapes (the
actors) on a textured background, drawn with the renderer of `processors.synthetic`. Every actor does one motion
action over the clip and may carry an appearance label:

    1 moving left      2 moving right     3 growing      4 shrinking      5 standing still     (need motion)
    6 striped          7 dotted                                                                 (appearance)

The keyframe is the middle frame (index T // 2). The motion actions are built so that the keyframe alone cannot tell
them apart: an actor's keyframe position and size are drawn independently of its action, moving left and right are
exact time reversals, and so are growing and shrinking. Appearance is visible in any frame.

Layout written under the output folder:

    videos/<video_id>.mp4                   the clips (MPEG-4 part 2, yuv420p)
    annotations/train.csv, val.csv          AVA CSV: video_id, timestamp, x1, y1, x2, y2 (normalised), action_id,
                                            person_id; one row per (actor, action)
    annotations/val_proposals.csv           person "detections": the val actors' keyframe boxes, slightly perturbed,
                                            scores in [0.85, 1], plus low-score (< 0.8) false boxes the official
                                            threshold removes
    annotations/val_excluded_timestamps.csv AVA excluded timestamps (a few val clips)
    annotations/label_map.pbtxt             the 7 actions
    info.json                               generation parameters, classes, motion classes, counts; written last

Python: root = ensure_synthetic_ava_dataset(num_videos=600). Everything is a function of (seed, clip index).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .fileio import cached_directory
from .synthetic import COLOURS, SHAPES, _draw, default_cache_dir, encode_mp4, render_in_pool

__all__ = ["AVA_SYNTHETIC_ACTIONS", "MOTION_ACTIONS", "SyntheticAVAConfig", "ensure_synthetic_ava_dataset",
           "generate_synthetic_ava_dataset", "render_ava_clip"]

GENERATOR_VERSION = 1
AVA_SYNTHETIC_ACTIONS = {1: "moving left", 2: "moving right", 3: "growing", 4: "shrinking", 5: "standing still",
                         6: "striped", 7: "dotted"}
MOTION_ACTIONS = (1, 2, 3, 4, 5)
_TEXTURES = ("striped", "dotted", "checkered")  # checkered carries no appearance label
TIMESTAMP = 902  # every clip is one keyframe; AVA keyframes are at integer seconds from 902


@dataclass(frozen=True)
class SyntheticAVAConfig:
    """Generation parameters (with the generator version they define the dataset and its cache key).

    num_videos: clips; a fixed hash of (seed, index) puts `val_fraction` of them in the held-out val split.
    num_frames, height, width: clip shape (height and width even, for yuv420p).
    """

    num_videos: int = 600
    num_frames: int = 8
    height: int = 64
    width: int = 96
    seed: int = 0
    fps: int = 8
    val_fraction: float = 0.25

    def __post_init__(self):
        for name in ("num_videos", "num_frames", "height", "width", "fps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.height % 2 or self.width % 2 or min(self.height, self.width) < 32:
            raise ValueError(f"height and width must be even and >= 32, got {self.height} x {self.width}")
        if self.num_frames < 4:
            raise ValueError(f"num_frames must be >= 4 for motion around the keyframe, got {self.num_frames}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")

    def cache_key(self) -> str:
        blob = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _background(rng: np.random.Generator, frames: int, height: int, width: int, grid) -> np.ndarray:
    """A muted colour with sinusoidal ripples and per-frame noise: (T, H, W, 3) float32."""
    ys, xs = grid
    field = np.zeros((height, width), np.float32)
    for _ in range(3):
        fx, fy = rng.uniform(-0.4, 0.4, size=2)
        field += np.sin(fx * xs + fy * ys + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    still = rng.uniform(40, 120, size=3)[None, None, :] + field[..., None] * rng.uniform(-12, 12, size=3)
    noise = rng.standard_normal((frames, height, width, 3), dtype=np.float32) * 3.0
    return (still[None] + noise).astype(np.float32)


def render_ava_clip(index: int, config: SyntheticAVAConfig) -> tuple[np.ndarray, list[dict], str]:
    """Clip `index`: frames uint8 (T, H, W, 3), its actors [{"box": normalised keyframe xyxy, "actions": [ids],
    "person_id"}], and its split ("train" / "val")."""
    rng = np.random.default_rng([config.seed, index])
    T, H, W = config.num_frames, config.height, config.width
    grid = np.meshgrid(np.arange(H, dtype=np.float32) + 0.5, np.arange(W, dtype=np.float32) + 0.5, indexing="ij")
    canvas = _background(rng, T, H, W, grid)
    t = (np.arange(T, dtype=np.float32) - T // 2) / (T - 1)  # 0 at the keyframe, total span 1
    actors = []
    count = int(rng.integers(2, 4))
    slots = rng.permutation(3)[:count]  # actors in different thirds of the width: boxes rarely coincide
    for person, slot in enumerate(slots):
        action = int(rng.choice(MOTION_ACTIONS))
        texture = _TEXTURES[rng.integers(len(_TEXTURES))]
        radius0 = rng.uniform(0.13, 0.17) * H
        key_centre = np.array([(slot + rng.uniform(0.35, 0.65)) * W / 3, rng.uniform(0.3, 0.7) * H], np.float32)
        centre = np.tile(key_centre, (T, 1))
        radius = np.full(T, radius0, np.float32)
        travel = rng.uniform(0.28, 0.36) * W
        if action in (1, 2):
            centre[:, 0] = key_centre[0] + (1.0 if action == 2 else -1.0) * t * travel
        elif action in (3, 4):
            radius = (radius0 * (1.0 + (1.0 if action == 3 else -1.0) * 1.1 * t)).astype(np.float32)
        _draw(canvas, grid, SHAPES[rng.integers(len(SHAPES))], texture,
              np.asarray(list(COLOURS.values())[rng.integers(len(COLOURS))], np.float32), centre, radius,
              np.full(T, rng.uniform(0, 2 * np.pi), np.float32), np.ones(T, np.float32))
        box = np.array([key_centre[0] - radius0, key_centre[1] - radius0, key_centre[0] + radius0,
                        key_centre[1] + radius0]) / np.array([W, H, W, H])
        labels = [action] + ([6] if texture == "striped" else [7] if texture == "dotted" else [])
        actors.append({"box": np.clip(box, 0, 1).round(4).tolist(), "actions": labels, "person_id": person})
    frames = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    split = "val" if np.random.default_rng([config.seed, index, 1]).random() < config.val_fraction else "train"
    return frames, actors, split


def _render_and_write(job: tuple[int, SyntheticAVAConfig, str]) -> dict:
    index, config, out_dir = job
    frames, actors, split = render_ava_clip(index, config)
    video_id = f"clip{index:06d}"
    encode_mp4(frames, os.path.join(out_dir, "videos", f"{video_id}.mp4"), config.fps, "mpeg4")
    return {"video_id": video_id, "actors": actors, "split": split, "index": index}


def _proposals(row: dict, config: SyntheticAVAConfig) -> list[list]:
    """Val person "detections": each actor's box perturbed by ~3 % with a score in [0.85, 1], and one false box with
    a score below the official 0.8 threshold."""
    rng = np.random.default_rng([config.seed, row["index"], 2])
    out = []
    for actor in row["actors"]:
        box = np.clip(np.asarray(actor["box"]) + rng.normal(0, 0.015, 4), 0, 1)
        out.append([row["video_id"], TIMESTAMP, *box.round(4).tolist(), round(float(rng.uniform(0.85, 1.0)), 4)])
    corner = rng.uniform(0, 0.6, 2)
    out.append([row["video_id"], TIMESTAMP, *corner.round(4).tolist(), *(corner + 0.3).round(4).tolist(),
                round(float(rng.uniform(0.3, 0.79)), 4)])
    return out


def generate_synthetic_ava_dataset(out_dir: str | os.PathLike, config: SyntheticAVAConfig = SyntheticAVAConfig(),
                                   num_workers: int | None = None) -> Path:
    """Render and write the dataset described by `config` into `out_dir` (created; must be empty or absent)."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"out_dir {str(out)!r} exists and is not empty; choose a new folder")
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir()
    rows = render_in_pool(_render_and_write, [(i, config, str(out)) for i in range(config.num_videos)], num_workers)
    for split in ("train", "val"):
        with open(out / "annotations" / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            for row in (r for r in rows if r["split"] == split):
                for actor in row["actors"]:
                    for action in actor["actions"]:
                        writer.writerow([row["video_id"], TIMESTAMP, *actor["box"], action, actor["person_id"]])
    val = [r for r in rows if r["split"] == "val"]
    with open(out / "annotations" / "val_proposals.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(p for row in val for p in _proposals(row, config))
    with open(out / "annotations" / "val_excluded_timestamps.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([row["video_id"], TIMESTAMP] for row in val[::10][:3])
    items = "".join(f'item {{\n  name: "{name}"\n  id: {i}\n}}\n' for i, name in AVA_SYNTHETIC_ACTIONS.items())
    (out / "annotations" / "label_map.pbtxt").write_text(items)
    counts = {split: sum(r["split"] == split for r in rows) for split in ("train", "val")}
    info = {**asdict(config), "generator_version": GENERATOR_VERSION, "timestamp": TIMESTAMP,
            "actions": {str(k): v for k, v in AVA_SYNTHETIC_ACTIONS.items()}, "motion_actions": list(MOTION_ACTIONS),
            "keyframe_index": config.num_frames // 2, "splits": counts}
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")  # last: its presence marks completion
    return out


def ensure_synthetic_ava_dataset(cache_dir: str | os.PathLike | None = None, num_workers: int | None = None,
                                 **config) -> Path:
    """The folder of the synthetic AVA dataset for `SyntheticAVAConfig(**config)`, generated on first use under
    `<cache_dir>/synthetic-ava-<hash>` (cache_dir: `processors.synthetic.default_cache_dir()`), atomically
    (`processors.fileio.cached_directory`)."""
    cfg = SyntheticAVAConfig(**config)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cached_directory(root / f"synthetic-ava-{cfg.cache_key()}",
                            lambda staging: generate_synthetic_ava_dataset(staging, cfg, num_workers))
