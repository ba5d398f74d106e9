"""Dataset sources: every source yields decoded clips; broken entries are skipped, counted and bounded."""

import csv
import io
import json
import logging
import tarfile

import datasets
import numpy as np
import pytest
import torch

from processors.collate import VideoCollator
from processors.datasets import (
    load_video_records,
    records_from_folder,
    records_from_hub,
    records_from_table,
    records_from_webdataset,
)
from processors.decoding import DecodeStats, TooManyDecodeFailures, VideoClipDecoder, decode_videos
from processors.synthetic import encode_mp4
from processors.transforms import EvalTransform
from processors.video_io import VideoDecodeError

NUM_GOOD, SIZE, FRAMES = 36, 32, 6
BROKEN_KINDS = ("truncated", "zero-byte", "not-a-video", "missing")


def level_of(label):
    return 30 + 60 * label


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    """36 good clips (label l is a flat grey of level 30 + 60 l) and one broken entry of each kind: 10 % broken."""
    root = tmp_path_factory.mktemp("clips")
    rows = []
    for i in range(NUM_GOOD):
        label = i % 3
        encode_mp4(np.full((FRAMES, SIZE, SIZE, 3), level_of(label), np.uint8), root / f"good_{i:02d}.mp4")
        rows.append({"path": f"good_{i:02d}.mp4", "label": label, "caption": f"clip {i} of class {label}"})
    good_bytes = (root / "good_00.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(good_bytes[: len(good_bytes) // 2])
    (root / "zero-byte.mp4").write_bytes(b"")
    (root / "not-a-video.mp4").write_bytes(b"label,caption\n1,hello\n" * 10)
    for k, kind in enumerate(BROKEN_KINDS):  # spread the broken entries through the table
        rows.insert(9 * k + 4, {"path": f"{kind}.mp4", "label": 0, "caption": f"broken: {kind}"})
    with open(root / "clips.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    with open(root / "clips.jsonl", "w") as handle:
        for row in rows:
            handle.write(json.dumps({"video": row["path"], "text": row["caption"]}) + "\n")
    return root


def decoder(stats=None, backend="auto"):
    return VideoClipDecoder(
        num_frames=4, sampling="sparse_test", transform=EvalTransform(16), backend=backend, stats=stats
    )


def check_batches(batches):
    """All clips valid, each with the label of its own video; returns the labels."""
    clips = torch.cat([batch["pixel_values"] for batch in batches])
    labels = torch.cat([batch["labels"] for batch in batches])
    assert clips.shape[1:] == (4, 3, 16, 16) and clips.dtype == torch.float32
    # Each clip's brightness matches its label: the right video went with the right label.
    grey = (clips[:, :, 0] * 0.229 + 0.485).mean(dim=(1, 2, 3)) * 255
    torch.testing.assert_close(grey, torch.tensor([float(level_of(label)) for label in labels]), atol=3, rtol=0)
    return labels.tolist()


def skip_messages(caplog):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped a sample")]


def test_streaming_csv_yields_exactly_the_good_clips_and_reports_the_skips(video_dir, tmp_path, caplog):
    stats = DecodeStats()
    records = records_from_table(video_dir / "clips.csv", streaming=True, cache_dir=str(tmp_path))
    dataset = decode_videos(records, decoder(stats))
    with caplog.at_level(logging.WARNING, logger="processors.datasets"):
        batches = list(torch.utils.data.DataLoader(dataset, batch_size=5, collate_fn=VideoCollator()))
    assert check_batches(batches) == [i % 3 for i in range(NUM_GOOD)]  # every good clip once, in order
    assert all(len(batch["labels"]) == 5 for batch in batches[:-1])  # filtered before batching: batches stay full
    assert (stats.num_decoded, stats.num_skipped) == (NUM_GOOD, len(BROKEN_KINDS))
    messages = skip_messages(caplog)
    assert [kind for kind in BROKEN_KINDS if any(f"{kind}.mp4" in m for m in messages)] == list(BROKEN_KINDS)
    # The running total: broken entries are samples 5, 14, 23 and 32.
    assert [m.split("(")[-1] for m in messages] == [f"{k + 1} of {9 * k + 5} samples skipped so far)" for k in range(4)]


def test_map_style_csv_replaces_broken_rows_and_counts_them(video_dir, tmp_path, caplog):
    records = records_from_table(video_dir / "clips.csv", cache_dir=str(tmp_path))
    assert len(records) == NUM_GOOD + len(BROKEN_KINDS) and set(records.column_names) == {"video", "label", "caption"}
    stats = DecodeStats()
    dataset = decode_videos(records, decoder(stats))
    assert len(dataset) == len(records)
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING, logger="processors.datasets"):
        batches = list(torch.utils.data.DataLoader(dataset, batch_size=5, collate_fn=VideoCollator()))
    labels = check_batches(batches)  # broken rows were served by good clips, with their own labels
    assert len(labels) == len(records) and all(len(batch["labels"]) == 5 for batch in batches)
    assert stats.num_decoded == len(records) and stats.num_skipped >= len(BROKEN_KINDS)
    messages = skip_messages(caplog)
    assert len(messages) == stats.num_skipped
    assert all(any(f"{kind}.mp4" in m for m in messages) for kind in BROKEN_KINDS)


def test_counts_add_up_across_dataloader_workers(video_dir, tmp_path):
    stats = DecodeStats()
    records = records_from_table(video_dir / "clips.csv", cache_dir=str(tmp_path))
    dataset = decode_videos(records, decoder(stats))
    # batch 3: the broken rows 4, 13, 22, 31 fall in batches 1, 4, 7, 10, read by workers 1, 0, 1, 0.
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=VideoCollator(), num_workers=2)
    assert len(check_batches(list(loader))) == len(records)
    assert stats.num_decoded == len(records) and stats.num_skipped >= len(BROKEN_KINDS)


def test_mostly_broken_data_stops_with_a_clear_error(tmp_path):
    good = tmp_path / "good.mp4"
    encode_mp4(np.zeros((4, 16, 16, 3), np.uint8), good)
    paths = [str(good)] * 2 + [str(tmp_path / f"missing_{i}.mp4") for i in range(8)]
    with open(tmp_path / "list.csv", "w") as handle:
        handle.write("video,label\n" + "".join(f"{p},0\n" for p in paths))
    stats = DecodeStats(max_bad_fraction=0.5, min_samples=6)
    records = records_from_table(tmp_path / "list.csv", streaming=True, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(TooManyDecodeFailures, match=r"of 6 samples failed to decode .*max_bad_fraction=50%"):
        list(decode_videos(records, decoder(stats)))
    # Map-style: replacing broken rows cannot hide it either.
    records = records_from_table(tmp_path / "list.csv", cache_dir=str(tmp_path / "cache"))
    dataset = decode_videos(records, decoder(DecodeStats(max_bad_fraction=0.5, min_samples=6)))
    with pytest.raises(TooManyDecodeFailures, match="failed to decode"):
        [dataset[i] for i in range(len(dataset))]


def test_jsonl_with_captions(video_dir, tmp_path):
    records = load_video_records(video_dir / "clips.jsonl", cache_dir=str(tmp_path))
    assert set(records.column_names) == {"video", "caption"}
    batch = VideoCollator()([decoder()(records[i]) for i in range(3)])
    assert set(batch) == {"pixel_values", "captions"} and batch["captions"] == [
        "clip 0 of class 0",
        "clip 1 of class 1",
        "clip 2 of class 2",
    ]


def test_class_folder_source(video_dir, tmp_path):
    for label, name in enumerate(["b_class", "a_class"]):
        (tmp_path / name).mkdir()
        for i in range(2):
            (tmp_path / name / f"{i}.mp4").write_bytes((video_dir / f"good_{label:02d}.mp4").read_bytes())
    (tmp_path / "a_class" / "notes.txt").write_text("not a video, not listed")
    records = records_from_folder(tmp_path)
    assert records.features["label"].names == ["a_class", "b_class"]  # sorted folder names
    assert len(records) == 4 and records[0]["label"] == 0 and records[0]["video"].endswith("a_class/0.mp4")
    streamed = decode_videos(records_from_folder(tmp_path, streaming=True), decoder())
    batch = VideoCollator()(list(streamed))
    assert batch["labels"].tolist() == [0, 0, 1, 1] and batch["pixel_values"].shape == (4, 4, 3, 16, 16)


def write_shard(path, members):
    with tarfile.open(path, "w") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


@pytest.fixture(scope="module")
def shard_dir(video_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    members = []
    for i in range(6):
        payload = (video_dir / ("truncated.mp4" if i == 3 else f"good_{i:02d}.mp4")).read_bytes()
        meta = {"label": i % 3, "caption": f"clip {i}"}
        members += [(f"k{i:03d}.mp4", payload), (f"k{i:03d}.json", json.dumps(meta).encode())]
    write_shard(folder / "train-000000.tar", members[:6])
    write_shard(folder / "train-000001.tar", members[6:])
    return folder


@pytest.mark.parametrize("streaming", [False, True])
def test_webdataset_shards_are_read_as_bytes_and_decoded_by_our_decoder(shard_dir, tmp_path, streaming):
    records = records_from_webdataset(str(shard_dir / "train-*.tar"), streaming=streaming, cache_dir=str(tmp_path))
    stats = DecodeStats()
    examples = list(decode_videos(records, decoder(stats)))
    captions = [e["caption"] for e in examples]
    if streaming:  # clip 3 (truncated) skipped
        assert captions == ["clip 0", "clip 1", "clip 2", "clip 4", "clip 5"]
        assert (stats.num_decoded, stats.num_skipped) == (5, 1)
    else:  # clip 3 replaced by another clip, with that clip's own label
        assert captions[:3] + captions[4:] == ["clip 0", "clip 1", "clip 2", "clip 4", "clip 5"]
        assert captions[3] in captions[:3] + captions[4:] and stats.num_decoded == 6 and stats.num_skipped >= 1
    assert all(e["label"] == int(e["caption"].split()[1]) % 3 for e in examples)
    assert all(e["pixel_values"].shape == (4, 3, 16, 16) for e in examples)


def test_hub_code_path_streams_a_local_dataset_folder(shard_dir, tmp_path):
    records = records_from_hub(str(shard_dir), split="train", streaming=True, cache_dir=str(tmp_path))
    assert isinstance(records, datasets.IterableDataset)
    batch = VideoCollator()(list(decode_videos(records, decoder())))
    assert batch["labels"].tolist() == [0, 1, 2, 1, 2]
    # A folder of .tar shards is recognised as a webdataset.
    inferred = load_video_records(shard_dir, streaming=True, cache_dir=str(tmp_path))
    assert [r["label"] for r in inferred] == [0, 1, 2, 0, 1, 2]  # records are undecoded: the broken one is there


def test_collator_drops_failed_examples_and_refuses_an_empty_batch():
    clip = torch.zeros(4, 3, 8, 8)
    batch = VideoCollator()([{"pixel_values": None, "label": 1}, {"pixel_values": clip, "label": 2}])
    assert batch["labels"].tolist() == [2] and batch["pixel_values"].shape == (1, 4, 3, 8, 8)
    with pytest.raises(VideoDecodeError, match="every clip of this batch"):
        VideoCollator()([{"pixel_values": None, "label": 1}])


def test_bad_arguments_raise_value_errors(video_dir, tmp_path):
    with pytest.raises(ValueError, match="sampling"):
        VideoClipDecoder(sampling="uniform")
    with pytest.raises(ValueError, match="video_column 'clip'"):
        records_from_table(video_dir / "clips.csv", video_column="clip", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="no 'split' column"):
        records_from_table(video_dir / "clips.csv", split="train", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="match no files"):
        records_from_webdataset(str(tmp_path / "nothing-*.tar"))
    with pytest.raises(ValueError, match="max_bad_fraction"):
        DecodeStats(max_bad_fraction=1.5)


def test_trainer_runs_on_a_dataset_with_broken_entries(video_dir, tmp_path):
    modeling_umt = pytest.importorskip("modeling_umt", reason="modeling_umt (the lead's package) is not importable")
    from transformers import Trainer, TrainingArguments

    config = modeling_umt.UMTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, image_size=16,
        patch_size=8, num_frames=4, tubelet_size=1, num_labels=3,
    )  # fmt: skip
    model = modeling_umt.UMTForVideoClassification(config)
    dataset = decode_videos(records_from_table(video_dir / "clips.csv", cache_dir=str(tmp_path / "cache")), decoder())
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=5, use_cpu=True, report_to=[],
        save_strategy="no", remove_unused_columns=False, dataloader_num_workers=0, logging_steps=1,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=VideoCollator())
    result = trainer.train()
    assert result.global_step == 5 and np.isfinite(result.training_loss)
