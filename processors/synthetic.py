"""The built-in synthetic video dataset: real mp4 files of textured shapes whose class needs temporal order.

Each clip shows one large textured shape on a textured background, plus small distractor shapes drifting
in random directions. The class is what the large shape does over time; classes come in time-reversed pairs
(moving left / right, up / down, growing / shrinking, rotating clockwise / counter-clockwise, appearing /
disappearing), so a single frame -- or a model that ignores frame order -- cannot tell them apart. Every clip
has a caption naming colour, texture, shape and action ("a red striped square moving left").

Layout written under the output folder:

    videos/000000.mp4 ...          MPEG-4 part 2 (or H.264) yuv420p clips
    metadata.csv, metadata.jsonl   path (relative), label, label_name, caption, split (train / val / test)
    webdataset/<split>-000000.tar  <key>.mp4 + <key>.json ({label, label_name, caption}) + <key>.txt (caption)
    info.json                      the generation parameters and class names; written last

Command line:  python -m processors.synthetic --out DIR --num_videos 1000 [--num_frames 16 --size 64 --seed 0]
Python:        root = ensure_synthetic_dataset(num_videos=1000)   # generated once, then reused from the cache

Everything is a function of (seed, clip index), so the output does not depend on the number of workers.
This module imports only numpy and PyAV, so worker processes start fast.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import multiprocessing
import os
import sys
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .fileio import cached_directory

__all__ = ["CLASS_NAMES", "SyntheticConfig", "ensure_synthetic_dataset", "generate_synthetic_dataset", "render_clip",
           "render_in_pool"]

# Bump when the rendering changes, so cached datasets made by older code are not reused.
GENERATOR_VERSION = 2

CLASS_NAMES = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "growing",
    "shrinking",
    "rotating clockwise",
    "rotating counter-clockwise",
    "appearing",
    "disappearing",
)
SHAPES = ("square", "circle", "triangle", "cross")
TEXTURES = ("striped", "checkered", "dotted")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 40),
    "cyan": (40, 210, 220),
    "magenta": (210, 50, 200),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
}
SPLITS = (("train", 0.8), ("val", 0.1), ("test", 0.1))


@dataclass(frozen=True)
class SyntheticConfig:
    """Generation parameters; with the generator version they define the dataset (and its cache key).

    Attributes:
        num_videos: number of clips (labels cycle through the classes, so classes are balanced).
        num_frames: frames per clip (T).
        size: frame height and width in pixels (even, >= 16: yuv420p halves the chroma resolution).
        seed: master seed; clip i uses the generator seeded with (seed, i).
        fps: frame rate written in the container.
        codec: "mpeg4" (MPEG-4 part 2, the default) or "libx264" (H.264). mpeg4 files are byte-identical for a
            given seed in any process; the libx264 bundled with PyAV is not -- separate processes encode the same
            frames into slightly different streams (measured on 48- and 64-px clips), so its pixels vary by a few
            grey levels between generations. Labels and captions are deterministic either way.
        shard_size: clips per webdataset tar shard.
    """

    num_videos: int = 1000
    num_frames: int = 16
    size: int = 64
    seed: int = 0
    fps: int = 8
    codec: str = "mpeg4"
    shard_size: int = 500

    def __post_init__(self):
        for name in ("num_videos", "num_frames", "fps", "shard_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.size, int) or self.size < 16 or self.size % 2:
            raise ValueError(f"size must be an even integer >= 16 (yuv420p needs even sides), got {self.size!r}")
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be >= 2 for motion to exist, got {self.num_frames}")
        if self.codec not in ("libx264", "mpeg4"):
            raise ValueError(f"codec must be 'libx264' or 'mpeg4', got {self.codec!r}")

    def cache_key(self) -> str:
        """A short hash of the parameters and generator version (the cache folder's suffix)."""
        blob = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# --------------------------------------------------------------------------------------------------
# Rendering: every frame of a clip at once, (T, H, W) coordinate grids, soft-edged shapes.
# --------------------------------------------------------------------------------------------------


def _shape_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (in units of the shape radius) to the outline; < 0 inside."""
    au, av = np.abs(u), np.abs(v)
    if shape == "square":
        return np.maximum(au, av) - 0.8
    if shape == "circle":
        return np.sqrt(u * u + v * v) - 0.9
    if shape == "triangle":  # equilateral, pointing up (v grows downwards)
        return np.maximum(v - 0.5, (np.sqrt(3.0) * au - v) / 2.0 - 0.5)
    if shape == "cross":
        return np.minimum(np.maximum(au - 0.3, av - 0.95), np.maximum(au - 0.95, av - 0.3))
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def _texture(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Brightness factor in [0.45, 1] drawn in the shape's own frame, so it turns and scales with the shape."""
    if texture == "striped":
        pattern = np.sin(u * 7.0) > 0
    elif texture == "checkered":
        pattern = (np.floor(u * 2.5) + np.floor(v * 2.5)) % 2 == 0
    elif texture == "dotted":
        fu, fv = u * 2.5 - np.floor(u * 2.5) - 0.5, v * 2.5 - np.floor(v * 2.5) - 0.5
        pattern = fu * fu + fv * fv > 0.06
    else:
        raise ValueError(f"texture must be one of {TEXTURES}, got {texture!r}")
    return np.where(pattern, 1.0, 0.45).astype(np.float32)


def _draw(
    canvas: np.ndarray,
    grid: tuple[np.ndarray, np.ndarray],
    shape: str,
    texture: str,
    colour: np.ndarray,
    centre: np.ndarray,
    radius: np.ndarray,
    angle: np.ndarray,
    alpha: np.ndarray,
) -> None:
    """Composite one shape onto canvas (T, H, W, 3) float32 in place.

    Per frame: centre (T, 2) as (x, y) pixels, radius, angle (radians, clockwise on screen) and alpha, each (T,).
    """
    ys, xs = grid  # (H, W) pixel centres
    dx = xs[None] - centre[:, 0, None, None]  # (T, H, W)
    dy = ys[None] - centre[:, 1, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    r = radius[:, None, None]
    # Pixel -> shape frame: undo the translation, the rotation (positive angle turns clockwise on screen,
    # where y points down) and the scale.
    u = (cos * dx + sin * dy) / r
    v = (-sin * dx + cos * dy) / r
    coverage = np.clip(0.5 - _shape_distance(shape, u, v) * r, 0.0, 1.0)  # ~1 px soft edge
    weight = (coverage * alpha[:, None, None])[..., None]
    paint = colour[None, None, None, :] * _texture(texture, u, v)[..., None]
    canvas *= 1.0 - weight
    canvas += weight * paint


def _background(rng: np.random.Generator, num_frames: int, size: int, grid) -> np.ndarray:
    """A muted random colour with a few random sinusoidal ripples, plus per-frame sensor noise: (T, H, W, 3)."""
    ys, xs = grid
    base = rng.uniform(40, 120, size=3)
    field = np.zeros((size, size), np.float32)
    for _ in range(3):
        fx, fy = rng.uniform(-0.4, 0.4, size=2)
        field += np.sin(fx * xs + fy * ys + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    tint = rng.uniform(-12, 12, size=3)
    still = base[None, None, :] + field[..., None] * tint[None, None, :]
    noise = rng.standard_normal((num_frames, size, size, 3), dtype=np.float32) * 3.0
    return (still[None] + noise).astype(np.float32)


def render_clip(index: int, config: SyntheticConfig, label: int | None = None) -> tuple[np.ndarray, dict]:
    """Render clip `index`: frames uint8 (T, H, W, 3) and its metadata (label, label_name, caption, split).

    `label` defaults to `index % len(CLASS_NAMES)`; overriding it renders the same scene (background, noise,
    distractors, object) with another action -- for a time-reversed class pair the object's states are
    exactly the same, in reverse order.
    """
    rng = np.random.default_rng([config.seed, index])
    T, S = config.num_frames, config.size
    label = index % len(CLASS_NAMES) if label is None else label
    if not 0 <= label < len(CLASS_NAMES):
        raise ValueError(f"label must be in [0, {len(CLASS_NAMES)}), got {label}")
    action = CLASS_NAMES[label]
    grid = np.meshgrid(np.arange(S, dtype=np.float32) + 0.5, np.arange(S, dtype=np.float32) + 0.5, indexing="ij")
    canvas = _background(rng, T, S, grid)
    time_ = np.linspace(0.0, 1.0, T, dtype=np.float32)

    # Distractors first, so the main object stays on top: small, any shape, drifting in a random direction.
    for _ in range(rng.integers(1, 3)):
        start = rng.uniform(0.15 * S, 0.85 * S, size=2)
        drift = rng.uniform(-0.25 * S, 0.25 * S, size=2)
        _draw(
            canvas,
            grid,
            SHAPES[rng.integers(len(SHAPES))],
            TEXTURES[rng.integers(len(TEXTURES))],
            np.asarray(list(COLOURS.values())[rng.integers(len(COLOURS))], np.float32),
            (start[None] + time_[:, None] * drift[None]).astype(np.float32),
            np.full(T, rng.uniform(0.06, 0.09) * S, np.float32),
            (rng.uniform(0, 2 * np.pi) + time_ * rng.uniform(-1, 1)).astype(np.float32),
            np.ones(T, np.float32),
        )

    shape, texture = SHAPES[rng.integers(len(SHAPES))], TEXTURES[rng.integers(len(TEXTURES))]
    colour_name = list(COLOURS)[rng.integers(len(COLOURS))]
    radius0 = rng.uniform(0.16, 0.22) * S
    centre = np.tile(rng.uniform(0.4 * S, 0.6 * S, size=2), (T, 1)).astype(np.float32)
    radius = np.full(T, radius0, np.float32)
    angle = np.full(T, rng.uniform(0, 2 * np.pi), np.float32)
    alpha = np.ones(T, np.float32)
    travel = rng.uniform(0.3, 0.45) * S
    if action.startswith("moving"):
        axis = 0 if action in ("moving left", "moving right") else 1
        sign = 1.0 if action in ("moving right", "moving down") else -1.0  # image y grows downwards
        centre[:, axis] = S / 2 + sign * (time_ - 0.5) * travel
    elif action in ("growing", "shrinking"):
        scale = 0.45 + 0.75 * (time_ if action == "growing" else 1.0 - time_)
        radius = (radius0 * scale).astype(np.float32)
    elif action.startswith("rotating"):
        turn = rng.uniform(0.5, 0.8) * np.pi  # centred on the start angle, so the pair is an exact time reversal
        angle = angle + (1.0 if action == "rotating clockwise" else -1.0) * (time_ - 0.5) * turn
    else:  # appearing / disappearing: fade over the middle of the clip, fully off / on at the ends
        ramp = np.clip((time_ - 0.15) / 0.7, 0.0, 1.0)
        alpha = (ramp if action == "appearing" else 1.0 - ramp).astype(np.float32)
    _draw(canvas, grid, shape, texture, np.asarray(COLOURS[colour_name], np.float32), centre, radius, angle, alpha)

    frames = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    draw = np.random.default_rng([config.seed, index, 1]).random()  # independent of the label, fixed per clip
    split = "train" if draw < SPLITS[0][1] else "val" if draw < SPLITS[0][1] + SPLITS[1][1] else "test"
    meta = {
        "label": label,
        "label_name": action,
        "caption": f"{'an' if colour_name[0] in 'aeiou' else 'a'} {colour_name} {texture} {shape} {action}",
        "split": split,
    }
    return frames, meta


def render_in_pool(render, jobs: list, num_workers: int | None = None) -> list:
    """`[render(job) for job in jobs]`, in up to `num_workers` processes (default: one per CPU core)."""
    workers = max(1, min(num_workers or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        return [render(job) for job in jobs]
    # fork starts workers in milliseconds; spawn (macOS, Windows) re-imports the render function's light module only.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers) as pool:
        return pool.map(render, jobs, chunksize=max(1, len(jobs) // (workers * 8)))


def encode_mp4(frames: np.ndarray, path: str | os.PathLike, fps: int = 8, codec: str = "libx264") -> None:
    """Write uint8 frames (T, H, W, 3) to an mp4 file (yuv420p) with PyAV."""
    import av  # imported here so rendering alone does not need PyAV

    # One encoder thread per file: the parallelism comes from the worker processes, and threaded encoders can
    # make different choices from run to run.
    options = {"threads": "1"}
    if codec == "libx264":
        options.update({"preset": "veryfast", "crf": "18", "x264-params": "threads=1:lookahead-threads=1"})
    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if codec == "mpeg4":
            stream.bit_rate = 2_000_000  # the default is low enough to smear 64 px textures; this matches x264 crf 18
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _render_and_write(job: tuple[int, SyntheticConfig, str]) -> dict:
    index, config, out_dir = job
    frames, meta = render_clip(index, config)
    relative = f"videos/{index:06d}.mp4"
    encode_mp4(frames, os.path.join(out_dir, relative), config.fps, config.codec)
    return {"key": f"{index:06d}", "path": relative, **meta}


def _add_to_tar(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(payload), 0, 0o644  # fixed mtime: shards are byte-reproducible
    archive.addfile(info, io.BytesIO(payload))


def generate_synthetic_dataset(
    out_dir: str | os.PathLike, config: SyntheticConfig = SyntheticConfig(), num_workers: int | None = None
) -> Path:
    """Render and write the dataset described by `config` into `out_dir` (created; must be empty or absent).

    Args:
        num_workers: processes rendering and encoding clips; default: the CPU count.
    Returns:
        Path of `out_dir`.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"out_dir {str(out)!r} exists and is not empty; choose a new folder")
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rows = render_in_pool(_render_and_write, [(i, config, str(out)) for i in range(config.num_videos)], num_workers)

    columns = ["path", "label", "label_name", "caption", "split"]
    with open(out / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with open(out / "metadata.jsonl", "w") as handle:
        for row in rows:
            handle.write(json.dumps({key: row[key] for key in columns}) + "\n")

    (out / "webdataset").mkdir()
    for split, _ in SPLITS:
        members = [row for row in rows if row["split"] == split]
        for shard, start in enumerate(range(0, len(members), config.shard_size)):
            with tarfile.open(out / "webdataset" / f"{split}-{shard:06d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
                for row in members[start : start + config.shard_size]:
                    _add_to_tar(tar, f"{row['key']}.mp4", (out / row["path"]).read_bytes())
                    label = {key: row[key] for key in ("label", "label_name", "caption")}
                    _add_to_tar(tar, f"{row['key']}.json", json.dumps(label).encode())
                    _add_to_tar(tar, f"{row['key']}.txt", row["caption"].encode())

    counts = {split: sum(row["split"] == split for row in rows) for split, _ in SPLITS}
    info = {**asdict(config), "generator_version": GENERATOR_VERSION, "classes": list(CLASS_NAMES), "splits": counts}
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")  # last: its presence marks completion
    return out


def default_cache_dir() -> Path:
    """$UMT_CACHE_DIR, else ~/.cache/umt."""
    return Path(os.environ.get("UMT_CACHE_DIR", Path.home() / ".cache" / "umt"))


def ensure_synthetic_dataset(
    cache_dir: str | os.PathLike | None = None,
    num_videos: int = 1000,
    num_frames: int = 16,
    size: int = 64,
    seed: int = 0,
    fps: int = 8,
    codec: str = "mpeg4",
    shard_size: int = 500,
    num_workers: int | None = None,
) -> Path:
    """Return the folder of the synthetic dataset with these parameters, generating it on first use.

    The dataset lives in `<cache_dir>/synthetic-<hash of the parameters>` (cache_dir defaults to
    `default_cache_dir()`). It is generated in a temporary sibling folder and renamed into place when complete
    (`processors.fileio.cached_directory`), so an interrupted run leaves nothing that looks finished, and concurrent
    callers each get a complete copy.

    Returns:
        Path of the dataset folder (see the module docstring for its layout).
    """
    config = SyntheticConfig(num_videos, num_frames, size, seed, fps, codec, shard_size)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cached_directory(root / f"synthetic-{config.cache_key()}",
                            lambda staging: generate_synthetic_dataset(staging, config, num_workers))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: python -m processors.synthetic --out DIR --num_videos N [...]."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    defaults = SyntheticConfig()
    for field in ("num_videos", "num_frames", "size", "seed", "fps", "shard_size"):
        parser.add_argument(f"--{field}", type=int, default=getattr(defaults, field))
    parser.add_argument("--codec", choices=("libx264", "mpeg4"), default=defaults.codec)
    parser.add_argument("--num_workers", type=int, default=None, help="processes (default: CPU count)")
    args = parser.parse_args(argv)
    config = SyntheticConfig(
        args.num_videos, args.num_frames, args.size, args.seed, args.fps, args.codec, args.shard_size
    )
    start = time.perf_counter()
    out = generate_synthetic_dataset(args.out, config, args.num_workers)
    info = json.loads((out / "info.json").read_text())
    print(f"wrote {config.num_videos} clips to {out} in {time.perf_counter() - start:.1f} s; splits {info['splits']}")


if __name__ == "__main__":
    sys.exit(main())
