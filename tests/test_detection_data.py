"""Action-detection data: box geometry as the official AlphAction fork, the AVA file readers, the train / test sample
transforms and collator, the detection video processor and its post-processing, and the synthetic AVA-style set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from processors.detection import (
    AVA_MEAN,
    AVA_STD,
    DetectionCollator,
    DetectionEvalTransform,
    DetectionTrainTransform,
    boxes_to_normalized,
    extend_boxes,
    jitter_boxes,
    keyframe_clip,
    read_ava_annotations,
    read_ava_exclusions,
    read_ava_label_map,
    read_ava_proposals,
    records_from_ava,
)
from processors.decoding import DecodeStats
from processors.rows import BadRowError, RowCheck
from processors.synthetic_ava import MOTION_ACTIONS, SyntheticAVAConfig, generate_synthetic_ava_dataset, render_ava_clip
from processors.video_processing_umt_detection import UMTDetectionVideoProcessor


# ---- box geometry ----------------------------------------------------------------------------------------------------
def test_extend_boxes_pads_by_the_official_fraction_and_clamps():
    boxes = torch.tensor([[10.0, 20.0, 29.0, 59.0], [0.0, 0.0, 99.0, 49.0]])
    out = extend_boxes(boxes, size=(70, 100))  # (height, width)
    # box 0: width 20 (+1 convention), height 40 -> pad x 0.1 * 20 / 2 = 1, y 0.05 * 40 / 2 = 1
    torch.testing.assert_close(out[0], torch.tensor([9.0, 19.0, 30.0, 60.0]))
    torch.testing.assert_close(out[1], torch.tensor([0.0, 0.0, 99.0, 50.25]))  # x clamped to W - 1


def test_jitter_boxes_stays_inside_and_within_the_official_ranges():
    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[20.0, 10.0, 59.0, 49.0]]).repeat(500, 1)
    out = jitter_boxes(boxes, (64, 96), g)
    w = h = 40.0
    assert (out[:, 0] >= 20 - 0.2 * w - 1e-4).all() and (out[:, 0] <= 20 + 0.1 * w + 1e-4).all()
    assert (out[:, 3] >= 49 - 0.05 * h - 1e-4).all() and (out[:, 3] <= 49 + 0.1 * h + 1e-4).all()
    assert (out[:, 2] > out[:, 0]).all() and (out[:, 2] <= 95).all() and (out[:, 3] <= 63).all()
    assert out[:, 0].std() > 1  # it does jitter
    again = jitter_boxes(boxes, (64, 96), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, again)


def test_boxes_to_normalized_adds_one_to_x2_y2_and_clips():
    out = boxes_to_normalized(torch.tensor([[10.0, 5.0, 49.0, 24.0], [0.0, 0.0, 120.0, 60.0]]), (50, 100))
    torch.testing.assert_close(out, torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]]))


# ---- AVA files -------------------------------------------------------------------------------------------------------
@pytest.fixture
def ava_files(tmp_path):
    (tmp_path / "train.csv").write_text(
        "vidA,0902,0.1,0.2,0.5,0.9,12,0\nvidA,0902,0.1,0.2,0.5,0.9,80,0\nvidA,0902,0.6,0.1,0.9,0.8,1,1\n"
        "vidB,0903,0.0,0.0,1.0,1.0,17,3\nvidB,0904,0.2,0.2,0.4,0.4,12,0\n")
    (tmp_path / "proposals.csv").write_text(
        "vidA,0902,0.1,0.2,0.5,0.9,,0.95\nvidA,0902,0.3,0.3,0.4,0.4,,0.5\nvidB,0903,0.05,0.0,1.0,1.0,0.81\n")
    (tmp_path / "excluded.csv").write_text("vidB,0904\n")
    (tmp_path / "labels.pbtxt").write_text(
        'item {\n  name: "bend/bow (at the waist)"\n  id: 1\n}\nitem {\n  name: "ride (e.g., a bike)"\n  id: 12\n}\n'
        'item {\n  name: "carry/hold (an object)"\n  label_id: 17\n}\n')
    return tmp_path


def test_ava_readers(ava_files):
    assert read_ava_label_map(ava_files / "labels.pbtxt") == {1: "bend/bow (at the waist)", 12: "ride (e.g., a bike)",
                                                              17: "carry/hold (an object)"}
    ann = read_ava_annotations(ava_files / "train.csv", class_ids=[1, 12, 17])
    assert sorted(ann) == ["vidA,0902", "vidB,0903", "vidB,0904"]
    assert ann["vidA,0902"] == [((0.1, 0.2, 0.5, 0.9), 12, 0), ((0.6, 0.1, 0.9, 0.8), 1, 1)]  # action 80 filtered
    proposals = read_ava_proposals(ava_files / "proposals.csv")
    assert proposals == {"vidA,0902": [((0.1, 0.2, 0.5, 0.9), 0.95)], "vidB,0903": [((0.05, 0.0, 1.0, 1.0), 0.81)]}
    assert read_ava_exclusions(ava_files / "excluded.csv") == {"vidB,0904"}
    with pytest.raises(ValueError, match="normalised"):
        (ava_files / "bad.csv").write_text("vidA,0902,10,20,50,90,12,0\n")
        read_ava_annotations(ava_files / "bad.csv")


def test_records_group_boxes_per_keyframe_with_multi_hot_labels(ava_files):
    ids = [1, 12, 17]
    train = records_from_ava(ava_files / "train.csv", "clips/{video_id}/{timestamp}.mp4", ids,
                             exclusions=ava_files / "excluded.csv")
    assert [r["video"] for r in train] == ["clips/vidA/902.mp4", "clips/vidB/903.mp4"]
    a = train[0]
    torch.testing.assert_close(a["boxes"], torch.tensor([[0.1, 0.2, 0.5, 0.9], [0.6, 0.1, 0.9, 0.8]]))
    torch.testing.assert_close(a["labels"], torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    torch.testing.assert_close(a["box_scores"], torch.ones(2))
    test = records_from_ava(ava_files / "train.csv", "{video_id}.mp4", ids, proposals=ava_files / "proposals.csv")
    assert [(r["video_id"], r["timestamp"], len(r["boxes"])) for r in test] == [("vidA", 902, 1), ("vidB", 903, 1)]
    torch.testing.assert_close(test[0]["box_scores"], torch.tensor([0.95]))
    torch.testing.assert_close(test[0]["labels"], torch.tensor([[0.0, 1.0, 0.0]]))  # the identical GT box's labels
    torch.testing.assert_close(test[1]["labels"], torch.zeros(1, 3))  # no identical GT box


GOOD = "vidA,0902,0.1,0.2,0.5,0.9,12,0\n"


@pytest.mark.parametrize(
    "line, column, value, reason",
    [
        ("vidA,09x2,0.1,0.2,0.5,0.9,12,0", "timestamp", "09x2", "bad number"),
        ("vidA,902.5,0.1,0.2,0.5,0.9,12,0", "timestamp", "902.5", "bad number"),
        ("vidA,-3,0.1,0.2,0.5,0.9,12,0", "timestamp", "-3", "bad number"),
        ("vidA,0902,abc,0.2,0.5,0.9,12,0", "x1", "abc", "bad number"),
        ("vidA,0902,0.1,nan,0.5,0.9,12,0", "y1", "nan", "bad number"),
        ("vidA,0902,0.1,0.2,,0.9,12,0", "x2", "", "missing value"),
        ("vidA,0902,0.1,0.2,1.5,0.9,12,0", "x2", "1.5", "bad box"),
        ("vidA,0902,0.5,0.2,0.1,0.9,12,0", "x2", "0.1", "bad box"),
        ("vidA,0902,0.1,0.2,0.5,0.9,jump,0", "action_id", "jump", "bad number"),
        ("vidA,0902,0.1,0.2,0.5,0.9,1.5,0", "action_id", "1.5", "bad number"),
        ("vidA,0902,0.1,0.2,0.5,0.9,12,p3", "person_id", "p3", "bad number"),
        ("vidA,0902,0.1,0.2,0.5,0.9,12,", "person_id", "", "missing value"),  # never a made-up id
        (",0902,0.1,0.2,0.5,0.9,12,0", "video_id", "", "missing value"),
        ("vidA,0902,0.1,0.2,0.5,0.9", "*", "", "wrong column count"),
    ],
)
def test_a_bad_annotation_line_is_named_or_skipped_and_counted(tmp_path, line, column, value, reason):
    path = tmp_path / "ann.csv"
    path.write_text(GOOD + line + "\n" + GOOD.replace("0902", "0903"))
    with pytest.raises(BadRowError) as error:  # no check: strict
        read_ava_annotations(path)
    message = str(error.value)
    assert f"{path}, line 2, column {column!r}" in message and "drop --strict_data" in message
    if value:
        assert repr(value) in message or value in message
    stats = DecodeStats()
    ann = read_ava_annotations(path, check=RowCheck(stats=stats))
    assert sorted(ann) == ["vidA,0902", "vidA,0903"]  # the good lines around it are kept
    assert stats.skipped_by_reason() == {reason: 1} and stats.summary() == f"decoded 0, skipped 1 ({reason}: 1)"


def test_person_id_is_an_integer_or_none_without_the_column(tmp_path):
    (tmp_path / "eight.csv").write_text("vidA,0902,0.1,0.2,0.5,0.9,12,7\n")
    (tmp_path / "seven.csv").write_text("vidA,0902,0.1,0.2,0.5,0.9,12\n")
    assert read_ava_annotations(tmp_path / "eight.csv") == {"vidA,0902": [((0.1, 0.2, 0.5, 0.9), 12, 7)]}
    assert read_ava_annotations(tmp_path / "seven.csv") == {"vidA,0902": [((0.1, 0.2, 0.5, 0.9), 12, None)]}


@pytest.mark.parametrize(
    "reader, text, match",
    [
        (read_ava_proposals, "vidA,0902,0.1,0.2,0.5,0.9,,high\n", r"line 1, column 'score'.*'high'.*finite number"),
        (read_ava_proposals, "vidA,09o2,0.1,0.2,0.5,0.9,0.95\n", r"line 1, column 'timestamp'.*'09o2'.*integer"),
        (read_ava_proposals, "vidA,0902,0.1,0.2,0.5,0.95\n", r"line 1, column '\*'.*expected 7 .* or 8 .*got 6"),
        (read_ava_exclusions, "vidB,0904\nvidB,x\n", r"line 2, column 'timestamp'.*'x'.*integer"),
        (read_ava_exclusions, "vidB,0904,1\n", r"line 1, column '\*'.*expected 2 \(video_id, timestamp\).*got 3"),
    ],
)
def test_proposal_and_exclusion_files_name_the_bad_line(tmp_path, reader, text, match):
    path = tmp_path / "file.csv"
    path.write_text(text)
    with pytest.raises(BadRowError, match=match):
        reader(path)
    stats = DecodeStats()
    reader(path, check=RowCheck(stats=stats))
    assert stats.num_rows_skipped == 1


@pytest.mark.parametrize(
    "text, match",
    [
        ('item {\n  name: "run"\n  id: one\n}\n', r"labels.pbtxt, line 3: expected an integer action id.*'one'"),
        ("item {\n  name: run\n  id: 1\n}\n", r"labels.pbtxt, line 2: expected a quoted name.*'name: run'"),
        ('item {\n name: "a"\n id: 1\n}\nitem {\n name: "b"\n id: 1\n}\n', r"line 7: action id 1 is given twice"),
    ],
)
def test_a_bad_label_map_line_raises_naming_file_and_line(tmp_path, text, match):
    (tmp_path / "labels.pbtxt").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_ava_label_map(tmp_path / "labels.pbtxt")


def test_records_count_bad_lines_of_every_file_and_take_files_read_once(ava_files):
    (ava_files / "train.csv").write_text((ava_files / "train.csv").read_text() + "vidC,0905,0.1,0.2,0.5,0.9,x,0\n")
    (ava_files / "proposals.csv").write_text((ava_files / "proposals.csv").read_text() + "vidA,0902,0.1\n")
    (ava_files / "excluded.csv").write_text("vidB,0904\nvidB,\n")
    with pytest.raises(BadRowError, match=r"train.csv, line 6, column 'action_id'"):
        records_from_ava(ava_files / "train.csv", "{video_id}.mp4", [1, 12, 17])
    stats = DecodeStats()
    check = RowCheck(stats=stats)
    by_path = records_from_ava(ava_files / "train.csv", "{video_id}.mp4", [1, 12, 17], ava_files / "proposals.csv",
                               ava_files / "excluded.csv", check=check)
    assert stats.skipped_by_reason() == {"bad number": 1, "wrong column count": 1, "missing value": 1}
    ann = read_ava_annotations(ava_files / "train.csv", check=RowCheck())
    excluded = read_ava_exclusions(ava_files / "excluded.csv", RowCheck())
    by_value = records_from_ava(ann, "{video_id}.mp4", [1, 12, 17], ava_files / "proposals.csv", excluded,
                                check=RowCheck())
    assert [r["video"] for r in by_value] == [r["video"] for r in by_path] == ["vidA.mp4", "vidB.mp4"]
    for a, b in zip(by_value, by_path):
        torch.testing.assert_close(a["labels"], b["labels"])


# ---- transforms and collator -----------------------------------------------------------------------------------------
def sample(h=48, w=80, t=4):
    video = torch.arange(t, dtype=torch.uint8).view(t, 1, 1, 1).expand(t, 3, h, w).clone() * 60
    return {"pixel_values": video, "boxes": torch.tensor([[0.1, 0.2, 0.4, 0.9], [0.9, 0.0, 1.0, 0.5]]),
            "labels": torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "box_scores": torch.tensor([1.0, 0.9]), "video_id": "x"}


def test_eval_transform_resizes_normalises_pads_and_enlarges():
    out = DetectionEvalTransform(short_side=32, pad_multiple=16)(sample())
    assert out["pixel_values"].shape == (4, 3, 32, 64)  # 48x80 -> 32x53, padded to 32x64
    assert out["frame_size"].tolist() == [32, 53] and out["original_size"].tolist() == [48, 80]
    expected = (60.0 - torch.tensor(AVA_MEAN)) / torch.tensor(AVA_STD)
    torch.testing.assert_close(out["pixel_values"][1, :, 5, 5], expected)
    assert (out["pixel_values"][..., 53:] == 0).all()  # zero padding after normalisation, as the official collator
    torch.testing.assert_close(out["proposal_boxes"][0], torch.tensor([0.1 * 53, 0.2 * 32, 0.4 * 53, 0.9 * 32]))
    torch.testing.assert_close(out["boxes"], extend_boxes(out["proposal_boxes"], (32, 53)))


def test_train_transform_crops_flips_and_moves_boxes():
    transform = DetectionTrainTransform(short_side=48, crop_size=48, flip_prob=1.0, jitter=None)
    out = transform(sample(), torch.Generator().manual_seed(3))
    assert out["pixel_values"].shape == (4, 3, 48, 48)
    # the second box (x 72..80 of 80) may fall outside the 48 px crop: then it goes with its labels and score
    assert len(out["boxes"]) == len(out["labels"]) == len(out["box_scores"])
    plain = DetectionTrainTransform(short_side=48, crop_size=48, flip_prob=0.0, jitter=None)
    a = plain(sample(), torch.Generator().manual_seed(3))
    torch.testing.assert_close(out["pixel_values"], a["pixel_values"].flip(-1))
    torch.testing.assert_close(out["boxes"][:, [0, 2]], 47 - a["boxes"][:, [2, 0]])
    jittered = DetectionTrainTransform(short_side=48, crop_size=48, flip_prob=0.0)(sample(), torch.Generator().manual_seed(3))
    assert not torch.equal(jittered["boxes"], a["boxes"])


def test_keyframe_only_repeats_the_middle_frame():
    video = sample()["pixel_values"]
    torch.testing.assert_close(keyframe_clip(video), video[2:3].expand_as(video))
    out = DetectionEvalTransform(short_side=32, keyframe_only=True)(sample())
    assert torch.equal(out["pixel_values"][0], out["pixel_values"][3])


def test_collator_pads_to_the_batch_and_keeps_per_clip_lists():
    t = DetectionEvalTransform(short_side=32, pad_multiple=16)
    a, b = t(sample()), t(sample(h=40, w=40))
    batch = DetectionCollator()([a, b])
    assert batch["pixel_values"].shape == (2, 4, 3, 32, 64)
    assert isinstance(batch["boxes"], list) and [x.shape for x in batch["boxes"]] == [(2, 4), (2, 4)]
    assert isinstance(batch["labels"], list) and batch["video_id"] == ["x", "x"]


# ---- the video processor ---------------------------------------------------------------------------------------------
def test_detection_processor_resizes_pads_rescales_boxes_and_post_processes(tmp_path):
    processor = UMTDetectionVideoProcessor()
    videos = [torch.randint(0, 256, (8, 3, 90, 160), dtype=torch.uint8),
              torch.randint(0, 256, (8, 3, 120, 120), dtype=torch.uint8)]
    boxes = [torch.tensor([[0.0, 0.0, 80.0, 45.0], [10.0, 20.0, 150.0, 89.0]]), torch.tensor([[10.0, 10.0, 60.0, 60.0]])]
    out = processor(videos, boxes=boxes, return_tensors="pt")
    assert out["pixel_values"].shape == (2, 8, 3, 256, 464)  # 90x160 -> 256x455 -> padded to 464
    torch.testing.assert_close(out["boxes"][0][0], torch.tensor([0.0, 0.0, 80 * 455 / 160, 45 * 256 / 90]))
    expected = (videos[1][0, :, 0, 0].float() - torch.tensor(AVA_MEAN)) / torch.tensor(AVA_STD)
    assert out["pixel_values"][1, 0, :, 0, 0].sub(expected).abs().max() < 1.5  # resized, 0-255 Detectron stats
    logits = torch.randn(3, 5)
    results = processor.post_process_action_detection(
        logits, out["boxes"], box_scores=[torch.tensor([0.9, 0.8]), torch.tensor([1.0])],
        target_sizes=[(90, 160), (120, 120)])
    torch.testing.assert_close(results[0]["scores"], logits[:2].sigmoid() * torch.tensor([[0.9], [0.8]]))
    torch.testing.assert_close(results[0]["boxes"], boxes[0], atol=1e-4, rtol=0)  # back in original pixels
    torch.testing.assert_close(results[1]["boxes"], boxes[1], atol=1e-4, rtol=0)
    processor.save_pretrained(tmp_path)
    reloaded = UMTDetectionVideoProcessor.from_pretrained(tmp_path)
    assert (tuple(reloaded.image_mean), reloaded.do_rescale, reloaded.size["shortest_edge"]) == (AVA_MEAN, False, 256)
    with pytest.raises(ValueError, match="rows"):
        processor.post_process_action_detection(logits[:2], out["boxes"])


# ---- the synthetic AVA-style set -------------------------------------------------------------------------------------
def test_synthetic_clips_hide_motion_at_the_keyframe_and_show_it_over_time():
    config = SyntheticAVAConfig(num_videos=4)
    frames, actors, split = render_ava_clip(1, config)
    assert frames.shape == (8, 64, 96, 3) and frames.dtype == np.uint8 and split in ("train", "val")
    assert 2 <= len(actors) <= 3
    assert all(sum(a in MOTION_ACTIONS for a in actor["actions"]) == 1 for actor in actors)
    again, _, _ = render_ava_clip(1, config)
    assert np.array_equal(frames, again)  # a function of (seed, index)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1  # things change over time


def test_synthetic_set_is_written_in_the_ava_layout_and_reads_back(tmp_path):
    root = generate_synthetic_ava_dataset(tmp_path / "ava", SyntheticAVAConfig(num_videos=16), num_workers=1)
    info = json.loads((root / "info.json").read_text())
    assert info["splits"]["train"] + info["splits"]["val"] == 16 and info["splits"]["val"] > 0
    labels = read_ava_label_map(root / "annotations" / "label_map.pbtxt")
    assert sorted(labels) == [1, 2, 3, 4, 5, 6, 7]
    train = records_from_ava(root / "annotations" / "train.csv", str(root / "videos" / "{video_id}.mp4"), sorted(labels))
    assert len(train) == info["splits"]["train"]
    assert all((r["labels"][:, :5].sum(1) == 1).all() for r in train)  # one motion action per actor
    val = records_from_ava(root / "annotations" / "val.csv", str(root / "videos" / "{video_id}.mp4"), sorted(labels),
                           proposals=root / "annotations" / "val_proposals.csv",
                           exclusions=root / "annotations" / "val_excluded_timestamps.csv")
    assert len(val) == info["splits"]["val"] - 1  # one excluded timestamp
    assert all((r["box_scores"] >= 0.8).all() for r in val)  # the low-score false boxes are gone
