"""The synthetic dataset: deterministic, balanced, temporal classes, readable by every dataset source."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from processors.datasets import records_from_table, records_from_webdataset
from processors.synthetic import (
    CLASS_NAMES,
    SyntheticConfig,
    ensure_synthetic_dataset,
    generate_synthetic_dataset,
    render_clip,
)
from processors.synthetic_ava import SyntheticAVAConfig, ensure_synthetic_ava_dataset
from processors.video_io import read_video

SMALL = SyntheticConfig(num_videos=20, num_frames=8, size=32, seed=3, shard_size=8)  # default codec: mpeg4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "data", SMALL, num_workers=2)


def read_rows(root):
    with open(root / "metadata.csv") as handle:
        return list(csv.DictReader(handle))


def test_layout_metadata_and_class_balance(dataset):
    rows = read_rows(dataset)
    assert len(rows) == 20 and len(CLASS_NAMES) >= 8
    assert {int(row["label"]) for row in rows} == set(range(len(CLASS_NAMES)))  # labels cycle: every class present
    for row in rows:
        assert row["label_name"] == CLASS_NAMES[int(row["label"])]
        assert row["caption"].endswith(row["label_name"]) and row["split"] in ("train", "val", "test")
        assert (dataset / row["path"]).stat().st_size > 0
    jsonl = [json.loads(line) for line in (dataset / "metadata.jsonl").read_text().splitlines()]
    assert [str(r["label"]) for r in jsonl] == [row["label"] for row in rows]
    info = json.loads((dataset / "info.json").read_text())
    assert info["classes"] == list(CLASS_NAMES) and sum(info["splits"].values()) == 20


def test_videos_decode_to_the_configured_shape(dataset):
    frames, video_info, _ = read_video(dataset / "videos" / "000007.mp4")
    assert frames.shape == (8, 3, 32, 32) and video_info.num_frames == 8 and video_info.fps == SMALL.fps


def test_generation_is_deterministic_and_independent_of_worker_count(dataset, tmp_path):
    again = generate_synthetic_dataset(tmp_path / "again", SMALL, num_workers=1)
    assert read_rows(again) == read_rows(dataset)
    for row in read_rows(dataset):
        assert (dataset / row["path"]).read_bytes() == (again / row["path"]).read_bytes(), row["path"]
    other_seed = generate_synthetic_dataset(
        tmp_path / "other", SyntheticConfig(**{**SMALL.__dict__, "num_videos": 2, "seed": 4})
    )
    assert not (
        read_video(other_seed / "videos" / "000000.mp4")[0] == read_video(dataset / "videos" / "000000.mp4")[0]
    ).all()


@pytest.mark.parametrize("pair", [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)])
def test_each_class_pair_differs_only_in_temporal_order(pair):
    # The same scene rendered as class a and as its partner b: the object goes through the same states in
    # reverse order. An order-free summary (the temporal mean) therefore cannot tell a from b, while the
    # frames themselves differ a lot.
    config = SyntheticConfig(num_videos=10, num_frames=8, size=48, seed=0)
    for index in (0, 7):
        a, meta_a = render_clip(index, config, label=pair[0])
        b, meta_b = render_clip(index, config, label=pair[1])
        assert (meta_a["label_name"], meta_b["label_name"]) == (CLASS_NAMES[pair[0]], CLASS_NAMES[pair[1]])
        a, b = a.astype(float), b.astype(float)
        per_frame = np.abs(a - b).mean()
        order_free = np.abs(a.mean(0) - b.mean(0)).mean()
        assert per_frame > 2 and order_free < per_frame / 10, (meta_a["label_name"], per_frame, order_free)


def test_captions_name_colour_texture_shape_and_action():
    _, meta = render_clip(0, SyntheticConfig(num_videos=1, num_frames=4, size=32))
    article, colour, texture, shape, *action = meta["caption"].split()
    assert article in ("a", "an") and " ".join(action) == "moving left"
    assert f"{colour} {texture} {shape}" in meta["caption"]


def test_webdataset_shards_and_csv_load_as_datasets(dataset, tmp_path):
    rows = read_rows(dataset)
    train_rows = [row for row in rows if row["split"] == "train"]
    shards = sorted(os.listdir(dataset / "webdataset"))
    assert all(name.endswith(".tar") for name in shards)
    shard_glob = str(dataset / "webdataset" / "train-*.tar")
    streamed = list(records_from_webdataset(shard_glob, streaming=True, cache_dir=str(tmp_path)))
    assert [r["label"] for r in streamed] == [int(row["label"]) for row in train_rows]
    assert [r["caption"] for r in streamed] == [row["caption"] for row in train_rows]
    table = records_from_table(dataset / "metadata.csv", split="train", cache_dir=str(tmp_path))
    assert table["label"] == [int(row["label"]) for row in train_rows]
    assert Path(table[0]["video"]).is_file()


def test_ensure_synthetic_dataset_generates_once_and_reuses(tmp_path):
    kwargs = dict(cache_dir=tmp_path, num_videos=4, num_frames=4, size=16, num_workers=1)
    first = ensure_synthetic_dataset(**kwargs)
    assert first.parent == tmp_path and first.name.startswith("synthetic-") and (first / "info.json").is_file()
    stamp = (first / "info.json").stat().st_mtime_ns
    second = ensure_synthetic_dataset(**kwargs)
    assert second == first and (second / "info.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]  # no temporary folder left behind
    assert ensure_synthetic_dataset(**{**kwargs, "seed": 1}) != first  # other parameters, other folder


def test_cache_folder_names_do_not_change(tmp_path):
    """The cache key (folder name) of a dataset already generated must stay the same, or every user regenerates it."""
    assert SyntheticConfig().cache_key() == "434755ae44a2"  # the default 1000-clip set of the scripts
    assert SyntheticAVAConfig().cache_key() == "56e7105abcc1"  # the default 600-clip AVA set of run_detection
    small = ensure_synthetic_dataset(cache_dir=tmp_path, num_videos=4, num_frames=4, size=16, num_workers=1)
    assert small == tmp_path / "synthetic-532a99398b6d"
    ava = ensure_synthetic_ava_dataset(cache_dir=tmp_path, num_workers=1, num_videos=4, num_frames=4, height=32,
                                       width=48)
    assert ava == tmp_path / "synthetic-ava-ddbf711b2572" and (ava / "annotations" / "train.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic-532a99398b6d", "synthetic-ava-ddbf711b2572"]


def test_command_line(tmp_path):
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "processors.synthetic", "--out", str(out), "--num_videos", "3",
               "--num_frames", "4", "--size", "16", "--codec", "libx264", "--num_workers", "1"]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 3 clips" in result.stdout and len(read_rows(out)) == 3
    assert read_video(out / "videos" / "000002.mp4")[0].shape == (4, 3, 16, 16)


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="size"):
        SyntheticConfig(size=33)
    with pytest.raises(ValueError, match="codec"):
        SyntheticConfig(codec="vp9")
    with pytest.raises(ValueError, match="num_videos"):
        SyntheticConfig(num_videos=0)
