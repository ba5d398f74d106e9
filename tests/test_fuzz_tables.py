"""Bad tables, one parametrized case each: every case ends in a clear error naming the problem (source, row, column,
value) or in a correct result (the right rows kept, with the right labels, and each skip counted under its reason).

The cases go through the real builders (`records_from_table`, `load_video_records`, `load_split_records`,
`records_from_webvid`, and the AVA readers of `processors.detection`) with a `RowCheck`, as the training scripts build
their datasets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_umt.cli import load_split_records
from processors.collate import VideoCollator
from processors.datasets import load_video_records, records_from_table
from processors.decoding import DecodeStats, VideoClipDecoder, decode_videos
from processors.detection import read_ava_annotations, read_ava_exclusions, read_ava_proposals
from processors.rows import BadRowError, RowCheck
from processors.synthetic import ensure_synthetic_dataset
from processors.transforms import EvalTransform
from processors.video_text import VideoTextCollator, records_from_webvid

CSV = "csv"
JSONL = "jsonl"

# (id, format, rows (header first for CSV; dicts for JSONL), RowCheck kwargs, expected)
# expected: {"labels": [...] | "videos": [...] | "captions": [...], "skipped": {reason: count}, "names": [...]} or
# (exception type, regex the message must match).
CASES = [
    ("label-abc-among-ids", CSV, ["video,label", "a.mp4,0", "b.mp4,abc", "c.mp4,1", "d.mp4,2"], dict(label=True),
     {"labels": [0, 1, 2], "skipped": {"label not an integer": 1}, "names": ["LABEL_0", "LABEL_1", "LABEL_2"]}),
    ("label-empty", CSV, ["video,label", "a.mp4,0", "b.mp4,", "c.mp4,1"], dict(label=True),
     {"labels": [0, 1], "skipped": {"missing label": 1}}),
    ("label-1.7", CSV, ["video,label", "a.mp4,0", "b.mp4,1.7", "c.mp4,1"], dict(label=True),
     {"labels": [0, 1], "skipped": {"label not an integer": 1}}),
    ("label-typo-99-in-3-classes", CSV, ["video,label", "a.mp4,0", "b.mp4,1", "c.mp4,2", "d.mp4,99", "e.mp4,1"],
     dict(label=True), {"labels": [0, 1, 2, 1], "skipped": {"label out of range": 1}, "names": 3}),
    ("label-negative", CSV, ["video,label", "a.mp4,0", "b.mp4,-1", "c.mp4,1"], dict(label=True),
     {"labels": [0, 1], "skipped": {"label out of range": 1}}),
    ("label-2.0-is-2", CSV, ["video,label", "a.mp4,0", "b.mp4,1", "c.mp4,2.0"], dict(label=True),
     {"labels": [0, 1, 2], "skipped": {}}),
    ("label-padded-digits", JSONL, [{"video": "a.mp4", "label": " 1 "}, {"video": "b.mp4", "label": "0"}],
     dict(label=True), {"labels": [1, 0], "skipped": {}}),
    ("label-word-nan", CSV, ["video,label", "a.mp4,0", "b.mp4,nan", "c.mp4,1"], dict(label=True),
     {"labels": [0, 1], "skipped": {"missing label": 1}}),
    ("label-names-sorted-map", CSV, ["video,label", "a.mp4,dog", "b.mp4,cat", "c.mp4,dog", "d.mp4,bird"],
     dict(label=True), {"labels": [2, 1, 2, 0], "skipped": {}, "names": ["bird", "cat", "dog"]}),
    ("label-names-with-empty", CSV, ["video,label", "a.mp4,dog", "b.mp4,", "c.mp4,cat"], dict(label=True),
     {"labels": [1, 0], "skipped": {"missing label": 1}, "names": ["cat", "dog"]}),
    ("label-unknown-name-vs-map", CSV, ["video,label", "a.mp4,dog", "b.mp4,cow", "c.mp4,cat"],
     dict(label=True, label_names=["cat", "dog"]), {"labels": [1, 0], "skipped": {"unknown class name": 1}}),
    ("label-id-beyond-map", CSV, ["video,label", "a.mp4,0", "b.mp4,3", "c.mp4,2"],
     dict(label=True, label_names=["x", "y", "z"]), {"labels": [0, 2], "skipped": {"label out of range": 1}}),
    ("label-names-and-ids-vs-map", CSV, ["video,label", "a.mp4,z", "b.mp4,0"],
     dict(label=True, label_names=["x", "y", "z"]), {"labels": [2, 0], "skipped": {}}),
    ("label-json-float", JSONL, [{"video": "a.mp4", "label": 0}, {"video": "b.mp4", "label": 1.7},
                                 {"video": "c.mp4", "label": 1}], dict(label=True),
     {"labels": [0, 1], "skipped": {"label not an integer": 1}}),
    ("label-json-null", JSONL, [{"video": "a.mp4", "label": 0}, {"video": "b.mp4", "label": None},
                                {"video": "c.mp4", "label": 1}], dict(label=True),
     {"labels": [0, 1], "skipped": {"missing label": 1}}),
    ("label-ids-from-1", CSV, ["video,label", "a.mp4,1", "b.mp4,2", "c.mp4,3"], dict(label=True),
     (ValueError, r"none is 0 \(smallest 1\); ids count from 0")),
    ("label-all-empty", CSV, ["video,label", "a.mp4,", "b.mp4,"], dict(label=True),
     (ValueError, r"none of its 2 rows is usable .*missing label: 2")),
    ("label-column-absent", CSV, ["video,caption", "a.mp4,hi"], dict(label=True),
     (ValueError, r"gives no labels .*'label' column")),
    ("label-strict-names-row-and-column", CSV, ["video,label", "a.mp4,0", "b.mp4,1", "c.mp4,abc"],
     dict(label=True, strict=True), (BadRowError, r"row 3, column 'label': label 'abc' is not an integer")),
    ("label-strict-typo", CSV, ["video,label", "a.mp4,0", "b.mp4,99", "c.mp4,1"], dict(label=True, strict=True),
     (BadRowError, r"row 2, column 'label': label '?99'? is outside the class ids 0\.\.1")),
    ("caption-empty", CSV, ["video,caption", "a.mp4,a cat", "b.mp4,", "c.mp4,a dog"], dict(caption=True),
     {"captions": ["a cat", "a dog"], "skipped": {"missing caption": 1}}),
    ("caption-whitespace", CSV, ["video,caption", "a.mp4,a cat", "b.mp4,   "], dict(caption=True),
     {"captions": ["a cat"], "skipped": {"missing caption": 1}}),
    ("caption-json-null-never-None", JSONL, [{"video": "a.mp4", "caption": None}, {"video": "b.mp4", "caption": "x"}],
     dict(caption=True), {"captions": ["x"], "skipped": {"missing caption": 1}}),
    ("caption-number-is-text", JSONL, [{"video": "a.mp4", "caption": 123}, {"video": "b.mp4", "caption": 4}],
     dict(caption=True), {"captions": ["123", "4"], "skipped": {}}),
    ("caption-column-absent", CSV, ["video,label", "a.mp4,0"], dict(caption=True),
     (ValueError, r"gives no captions .*\.txt")),
    ("caption-strict", CSV, ["video,caption", "a.mp4,x", "b.mp4,"], dict(caption=True, strict=True),
     (BadRowError, r"row 2, column 'caption': the caption is empty")),
    ("video-empty-path", CSV, ["video,label", "a.mp4,0", ",1", "c.mp4,1"], dict(label=True),
     {"videos": ["a.mp4", "c.mp4"], "skipped": {"missing video": 1}}),
    ("video-strict-empty-path", CSV, ["video,label", ",0"], dict(strict=True),
     (BadRowError, r"row 1, column 'video': the video path is empty")),
    ("unused-label-column-dropped", CSV, ["video,label,caption", "a.mp4,,x", "b.mp4,1,"], dict(),
     {"videos": ["a.mp4", "b.mp4"], "skipped": {}, "columns": ["video"]}),
    ("many-reasons-counted", CSV, ["video,label,caption", "a.mp4,0,x", ",1,y", "c.mp4,,z", "d.mp4,1.5,w",
                                   "e.mp4,1,", "f.mp4,1,v"], dict(label=True, caption=True),
     {"labels": [0, 1], "skipped": {"missing video": 1, "missing label": 1, "label not an integer": 1,
                                    "missing caption": 1}}),
]


def _write(tmp_path: Path, fmt: str, rows: list) -> Path:
    path = tmp_path / f"table.{fmt}"
    if fmt == CSV:
        path.write_text("\n".join(rows) + "\n")
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("fmt,rows,kwargs,expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_table(tmp_path, fmt, rows, kwargs, expected):
    path = _write(tmp_path, fmt, rows)
    stats = DecodeStats()
    check = RowCheck(stats=stats, **kwargs)
    if isinstance(expected, tuple):
        with pytest.raises(expected[0], match=expected[1]) as error:
            records_from_table(path, check=check, cache_dir=str(tmp_path / "cache"))
        if expected[0] is BadRowError:
            assert str(path) in str(error.value)  # the file is named
        return
    records = records_from_table(path, check=check, cache_dir=str(tmp_path / "cache"))
    if "labels" in expected:
        assert list(records["label"]) == expected["labels"]
    if "captions" in expected:
        assert list(records["caption"]) == expected["captions"] and "None" not in records["caption"]
    if "videos" in expected:
        assert [os.path.basename(v) for v in records["video"]] == expected["videos"]
    if "columns" in expected:
        assert records.column_names == expected["columns"]
    if "names" in expected:
        names = expected["names"]
        assert check.label_names == names if isinstance(names, list) else len(check.label_names) == names
    assert stats.skipped_by_reason() == expected["skipped"]
    assert stats.num_rows_skipped == sum(expected["skipped"].values())
    assert "__row__" not in records.column_names


def test_bad_row_numbers_count_the_whole_file_before_the_split_is_filtered(tmp_path):
    path = _write(tmp_path, CSV, ["video,label,split", "a.mp4,0,train", "b.mp4,1,val", "c.mp4,1,train",
                                  "d.mp4,x,train"])
    with pytest.raises(BadRowError, match=r"row 4, column 'label'"):
        records_from_table(path, split="train", check=RowCheck(label=True, strict=True),
                           cache_dir=str(tmp_path / "cache"))


def test_streamed_table_checks_rows_against_the_label_map(tmp_path):
    path = _write(tmp_path, CSV, ["video,label", "a.mp4,cat", "b.mp4,cow", "c.mp4,", "d.mp4,dog"])
    stats = DecodeStats()
    records = records_from_table(path, streaming=True, check=RowCheck(label=True, label_names=["cat", "dog"],
                                                                        stats=stats))
    assert [row["label"] for row in records] == [0, 1]
    assert stats.skipped_by_reason() == {"missing label": 1, "unknown class name": 1}


def test_streamed_table_cannot_infer_classes(tmp_path):
    path = _write(tmp_path, CSV, ["video,label", "a.mp4,cat"])
    with pytest.raises(ValueError, match="is streamed: .*pass --label_map"):
        records_from_table(path, streaming=True, check=RowCheck(label=True))


def test_split_less_table_trains_on_every_row(tmp_path):
    path = _write(tmp_path, CSV, ["video,label", "a.mp4,0", "b.mp4,1", "c.mp4,0"])
    assert len(load_split_records(str(path), None, "train")) == 3  # no `--split ""` needed


def test_webvid_missing_caption_is_skipped_never_the_word_none(tmp_path):
    path = _write(tmp_path, CSV, ["videoid,contentUrl,name", "1,http://h/1.mp4,a cat", "2,http://h/2.mp4,"])
    stats = DecodeStats()
    records = RowCheck(caption=True, stats=stats).apply(records_from_webvid(path), str(path))
    assert records["caption"] == ["a cat"] and stats.skipped_by_reason() == {"missing caption": 1}


def test_text_collator_names_a_caption_that_is_not_text():
    class _Tokenizer:
        def __call__(self, texts, **kwargs):
            raise AssertionError("must not be reached")

    samples = [{"pixel_values": torch.zeros(1, 3, 2, 2), "caption": "x"}, {"pixel_values": torch.zeros(1, 3, 2, 2),
                                                                           "caption": 7}]
    with pytest.raises(ValueError, match=r"every caption must be text, got 7 in sample 1"):
        VideoTextCollator(_Tokenizer())(samples)


def test_collator_refuses_a_batch_without_required_labels():
    samples = [{"pixel_values": torch.zeros(1, 3, 2, 2), "label": None} for _ in range(2)]
    assert "labels" not in VideoCollator()(samples)  # optional: left out when every sample lacks it
    with pytest.raises(ValueError, match="key 'label' is required but missing"):
        VideoCollator(required=("label",))(samples)
    mixed = [{"pixel_values": torch.zeros(1, 3, 2, 2), "label": 1}, {"pixel_values": torch.zeros(1, 3, 2, 2)}]
    with pytest.raises(ValueError, match="key 'label' is in 1 of the 2 samples"):
        VideoCollator()(mixed)


# ---- folders and globs ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    root = ensure_synthetic_dataset(cache_dir=tmp_path_factory.mktemp("synthetic"), num_videos=6, num_frames=4,
                                    size=32, num_workers=1)
    return sorted((root / "videos").glob("*.mp4"))


def _flat(tmp_path: Path, clips: list[Path], captions: dict[int, str] | None = None) -> Path:
    folder = tmp_path / "flat"
    folder.mkdir()
    for i, clip in enumerate(clips):
        os.symlink(clip, folder / clip.name)
        if captions and i in captions:
            (folder / clip.with_suffix(".txt").name).write_text(captions[i] + "\n")
    return folder


def test_flat_folder_without_captions_is_refused_for_captions(tmp_path, clips):
    folder = _flat(tmp_path, clips)
    with pytest.raises(ValueError, match=r"gives no captions .*clip1\.mp4 -> clip1\.txt"):
        load_video_records(folder, check=RowCheck(caption=True))
    with pytest.raises(ValueError, match=r"gives no labels .*class sub-folders"):
        load_video_records(folder, check=RowCheck(label=True))


def test_flat_folder_sidecar_captions_and_missing_ones_counted(tmp_path, clips):
    folder = _flat(tmp_path, clips, {0: "a red square", 2: "a blue circle"})
    stats = DecodeStats()
    records = load_video_records(folder, check=RowCheck(caption=True, stats=stats))
    assert records["caption"] == ["a red square", "a blue circle"]
    assert stats.skipped_by_reason() == {"missing caption": len(clips) - 2}


def test_glob_of_videos_is_a_source(tmp_path, clips):
    folder = _flat(tmp_path, clips)
    records = load_video_records(str(folder / "*.mp4"))
    assert records.column_names == ["video"] and len(records) == len(clips)


def test_folder_with_videos_at_two_levels_is_refused(tmp_path, clips):
    folder = _flat(tmp_path, clips[:2])
    (folder / "cls").mkdir()
    os.symlink(clips[2], folder / "cls" / clips[2].name)
    with pytest.raises(ValueError, match="both directly and in sub-folders"):
        load_video_records(folder)


def test_map_style_skips_count_broken_rows_not_substitute_draws(tmp_path, clips):
    broken = [tmp_path / f"missing_{i}.mp4" for i in range(4)]
    rows = [str(c) for c in clips] + [str(b) for b in broken]
    path = _write(tmp_path, CSV, ["video"] + rows)
    stats = DecodeStats(max_bad_fraction=0.9)
    records = records_from_table(path, cache_dir=str(tmp_path / "cache"))
    decoder = VideoClipDecoder(num_frames=2, transform=EvalTransform(16), stats=stats, seed=0)
    dataset = decode_videos(records, decoder)
    torch.manual_seed(0)
    for i in range(len(dataset)):
        assert dataset[i]["pixel_values"].shape == (2, 3, 16, 16)
    assert stats.num_skipped == 4 and stats.num_decoded == len(rows)
    assert stats.summary() == f"decoded {len(rows)}, skipped 4 (video failed to decode: 4)"


def test_summary_line_adds_row_skips_and_decode_failures():
    stats = DecodeStats()
    stats.record_success()
    stats.record_failure(ValueError("x.mp4"))
    stats.record_row_skip("missing caption", "t.csv, row 3", log=False)
    assert stats.summary() == "decoded 1, skipped 2 (video failed to decode: 1, missing caption: 1)"
    with pytest.raises(ValueError, match="reason must be one of"):
        stats.record_row_skip("bad vibes", "t.csv, row 1")
    assert np.isclose(stats.num_rows_skipped, 1)


def test_class_folders_follow_a_given_label_map_by_name(tmp_path, clips):
    root = tmp_path / "classes"
    for name, clip in zip(("b_cls", "a_cls"), clips):
        (root / name).mkdir(parents=True)
        os.symlink(clip, root / name / clip.name)
    stats = DecodeStats()
    records = load_video_records(root, check=RowCheck(label=True, label_names=["b_cls", "z_cls", "a_cls"],
                                                      stats=stats))
    assert list(records["label"]) == [2, 0]  # a_cls (folder id 0) is class 2 of the map, b_cls class 0
    unknown = load_video_records(root, check=RowCheck(label=True, label_names=["a_cls"], stats=stats))
    assert list(unknown["label"]) == [0] and stats.skipped_by_reason() == {"unknown class name": 1}


# ---- AVA files (processors.detection): every line checked once, as run_detection reads them --------------------------
OK_LINE = "vidA,0902,0.1,0.2,0.5,0.9,12,0"
AVA_CASES = [  # (id, reader, lines, strict, expected: {"keys": [...], "skipped": {...}} or (exception, regex))
    ("ava-timestamp-text", "annotations", [OK_LINE, "vidA,09o2,0.1,0.2,0.5,0.9,12,0"], False,
     {"keys": ["vidA,0902"], "skipped": {"bad number": 1}}),
    ("ava-timestamp-strict", "annotations", [OK_LINE, "vidA,09o2,0.1,0.2,0.5,0.9,12,0"], True,
     (BadRowError, r"line 2, column 'timestamp': timestamp \(column 2\) is '09o2'; expected an integer >= 0")),
    ("ava-box-text-strict", "annotations", ["vidA,0902,0.1,top,0.5,0.9,12,0"], True,
     (BadRowError, r"line 1, column 'y1': y1 \(column 4\) is 'top'; expected a finite number")),
    ("ava-box-pixels", "annotations", [OK_LINE, "vidB,0902,10,20,50,90,12,0"], False,
     {"keys": ["vidA,0902"], "skipped": {"bad box": 1}}),
    ("ava-box-inverted-strict", "annotations", ["vidA,0902,0.5,0.2,0.1,0.9,12,0"], True,
     (BadRowError, r"column 'x2': the box \(0.5, 0.2, 0.1, 0.9\) ends before it starts")),
    ("ava-action-float-strict", "annotations", ["vidA,0902,0.1,0.2,0.5,0.9,12.0,0"], True,
     (BadRowError, r"column 'action_id': action_id \(column 7\) is '12.0'; expected an integer")),
    ("ava-person-empty", "annotations", [OK_LINE, "vidB,0902,0.1,0.2,0.5,0.9,12,"], False,
     {"keys": ["vidA,0902"], "skipped": {"missing value": 1}}),
    ("ava-person-text-strict", "annotations", ["vidA,0902,0.1,0.2,0.5,0.9,12,p1"], True,
     (BadRowError, r"column 'person_id': person_id \(column 8\) is 'p1'")),
    ("ava-six-columns", "annotations", [OK_LINE, "vidB,0902,0.1,0.2,0.5,0.9"], False,
     {"keys": ["vidA,0902"], "skipped": {"wrong column count": 1}}),
    ("ava-blank-lines-ignored", "annotations", ["", OK_LINE, " , ", ""], False, {"keys": ["vidA,0902"], "skipped": {}}),
    ("ava-proposal-score-text", "proposals", ["vidA,0902,0.1,0.2,0.5,0.9,0.9", "vidB,0902,0.1,0.2,0.5,0.9,,x"],
     False, {"keys": ["vidA,0902"], "skipped": {"bad number": 1}}),
    ("ava-proposal-inf-strict", "proposals", ["vidA,0902,0.1,0.2,0.5,0.9,inf"], True,
     (BadRowError, r"column 'score': score \(column 7\) is 'inf'; expected a finite number")),
    ("ava-exclusion-timestamp", "exclusions", ["vidA,0902", "vidB,", "vidC,x"], False,
     {"keys": ["vidA,0902"], "skipped": {"missing value": 1, "bad number": 1}}),
    ("ava-exclusion-three-columns-strict", "exclusions", ["vidA,0902,1"], True,
     (BadRowError, r"line 1, column '\*': expected 2 \(video_id, timestamp\) columns, got 3")),
]
AVA_READERS = {"annotations": read_ava_annotations, "proposals": read_ava_proposals, "exclusions": read_ava_exclusions}


@pytest.mark.parametrize("reader,lines,strict,expected", [c[1:] for c in AVA_CASES], ids=[c[0] for c in AVA_CASES])
def test_bad_ava_file(tmp_path, reader, lines, strict, expected):
    path = tmp_path / "ava.csv"
    path.write_text("\n".join(lines) + "\n")
    stats = DecodeStats()
    check = RowCheck(strict=strict, stats=stats)
    if isinstance(expected, tuple):
        with pytest.raises(expected[0], match=expected[1]) as error:
            AVA_READERS[reader](path, check=check)
        assert str(error.value).startswith(f"{path}, line ")  # the file is named first
        return
    assert sorted(AVA_READERS[reader](path, check=check)) == expected["keys"]
    assert stats.skipped_by_reason() == expected["skipped"]
