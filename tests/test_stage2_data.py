"""Stage-2 data (processors/video_text.py): WebVid tables, image-text pairs as 1-frame videos, retrieval annotations,
caption cleaning and tokenised batches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from processors.decoding import DecodeStats, ImageClipDecoder, VideoClipDecoder, decode_videos
from processors.synthetic import SyntheticConfig, encode_mp4, render_clip
from processors.transforms import EvalTransform
from processors.video_text import (
    VideoTextCollator,
    load_retrieval_annotations,
    pre_text,
    records_from_image_text,
    records_from_webvid,
)


def test_pre_text_follows_the_official_cleaning():
    assert pre_text("A Man-made <person>: jumps/runs, (fast)!!  Yes?") == "a man made person jumps runs fast yes"
    assert pre_text("one two three", max_words=2) == "one two"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("webvid")
    config = SyntheticConfig(num_videos=3, num_frames=4, size=32)
    for i in range(3):
        (root / "part1").mkdir(exist_ok=True)
        encode_mp4(render_clip(i, config)[0], root / "part1" / f"{100 + i}.mp4", codec="mpeg4")
    return root


def test_webvid_table_from_a_local_copy_with_page_dir(videos, tmp_path):
    table = tmp_path / "webvid.csv"
    table.write_text(
        "videoid,contentUrl,page_dir,name\n"
        "100,https://gone.example/100.mp4,part1,Clip zero.\n"
        "101,https://gone.example/101.mp4,part1,Clip one!\n"
        "999,https://gone.example/999.mp4,part1,missing clip\n"
    )
    records = records_from_webvid(table, video_root=videos)
    assert records.column_names == ["video", "caption", "id"]
    assert records[0] == {"video": str(videos / "part1" / "100.mp4"), "caption": "Clip zero.", "id": 0}
    mirrored = records_from_webvid(table, url_template="https://mirror.example/{page_dir}/{videoid}.mp4")
    assert mirrored[1]["video"] == "https://mirror.example/part1/101.mp4"
    assert records_from_webvid(table)[2]["video"] == "https://gone.example/999.mp4"
    # decoding: the missing clip is skipped (streaming) and counted
    stats = DecodeStats(max_bad_fraction=0.9)
    decoder = VideoClipDecoder(num_frames=2, sampling="middle", transform=EvalTransform(32, keep_aspect_ratio=False),
                               stats=stats)
    streamed = list(decode_videos(records_from_webvid(table, video_root=videos, streaming=True), decoder))
    assert [e["caption"] for e in streamed] == ["Clip zero.", "Clip one!"] and stats.num_skipped == 1
    assert streamed[0]["pixel_values"].shape == (2, 3, 32, 32) and streamed[1]["id"] == 1
    with pytest.raises(ValueError, match="videoid"):
        bad = tmp_path / "bad.csv"
        bad.write_text("video,caption\na.mp4,x\n")
        records_from_webvid(bad)


def test_image_text_pairs_become_one_frame_videos(tmp_path):
    for i in range(2):
        Image.fromarray(np.full((20, 30, 3), 60 * i, np.uint8)).save(tmp_path / f"img{i}.png")
    (tmp_path / "cc3m.jsonl").write_text(
        "\n".join(json.dumps({"image": f"img{i}.png", "caption": f"picture {i}"}) for i in range(2))
    )
    records = records_from_image_text(tmp_path / "cc3m.jsonl")
    decoder = ImageClipDecoder(EvalTransform(32, keep_aspect_ratio=False))
    data = decode_videos(records, decoder)
    example = data[1]
    assert example["pixel_values"].shape == (1, 3, 32, 32) and example["caption"] == "picture 1" and example["id"] == 1
    with pytest.raises(Exception, match="cannot decode"):
        decoder.decode(str(tmp_path / "nope.png"))


def test_retrieval_annotations_with_several_captions_per_video(tmp_path):
    (tmp_path / "test.json").write_text(json.dumps([
        {"video": "a.mp4", "caption": ["first of a", "second of a"]},
        {"video": "b.mp4", "caption": "only b"},
    ]))
    ann = load_retrieval_annotations(tmp_path / "test.json")
    assert ann.videos == [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    assert ann.texts == ["first of a", "second of a", "only b"]
    assert ann.txt2video == [0, 0, 1] and ann.video2txt == [[0, 1], [2]]
    assert ann.records()["id"] == [0, 0, 1]
    (tmp_path / "meta.csv").write_text("path,caption,split\nv0.mp4,zero,test\nv1.mp4,one,train\nv0.mp4,zero bis,test\n")
    csv_ann = load_retrieval_annotations(tmp_path / "meta.csv", split="test")
    assert csv_ann.video2txt == [[0, 1]] and csv_ann.texts == ["zero", "zero bis"]
    with pytest.raises(ValueError, match="path"):
        load_retrieval_annotations(tmp_path / "missing.json")


def test_collator_tokenises_cleaned_captions_to_fixed_length():
    class Tokenizer:  # records what it was asked
        def __call__(self, texts, padding, truncation, max_length, return_tensors):
            self.texts, self.args = texts, (padding, truncation, max_length)
            ids = torch.ones(len(texts), max_length, dtype=torch.long)
            return {"input_ids": ids, "attention_mask": ids.clone()}

    tokenizer = Tokenizer()
    batch = VideoTextCollator(tokenizer, max_length=8)([
        {"pixel_values": torch.zeros(2, 3, 4, 4), "caption": "A Dog!", "id": 3},
        {"pixel_values": None, "caption": "broken", "id": 4},
        {"pixel_values": torch.ones(2, 3, 4, 4), "caption": "Two-cats", "id": 5},
    ])
    assert tokenizer.texts == ["a dog", "two cats"] and tokenizer.args == ("max_length", True, 8)
    assert batch["pixel_values"].shape == (2, 2, 3, 4, 4) and batch["ids"].tolist() == [3, 5]
    assert batch["input_ids"].shape == (2, 8)
