"""The one decoding pipeline: sample dicts from record to batch, seeded per-sample draws for every stage, images as
1-frame videos, multi-view tests through the same decoder, and one eval transform shared with the video processor."""

import json

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from processors.collate import VideoCollator
from processors.datasets import records_from_table
from processors.decoding import (
    DecodeStats,
    ImageClipDecoder,
    MultiViewClipDecoder,
    TooManyDecodeFailures,
    VideoClipDecoder,
    decode_videos,
)
from processors.synthetic import encode_mp4
from processors.transforms import ClipTransform, EvalTransform, SampleTransform, Stage2TrainTransform, eval_views
from processors.video_io import VideoReader
from processors.video_processing_umt import UMTVideoProcessor


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Four 12-frame 40x56 clips whose frames are noise (so different draws give different pixels)."""
    root = tmp_path_factory.mktemp("decoding")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        encode_mp4(rng.integers(0, 256, (12, 40, 56, 3), dtype=np.uint8), root / f"c{i}.mp4", codec="mpeg4")
        paths.append(str(root / f"c{i}.mp4"))
    return paths


def records_with_annotations(paths):
    return datasets.Dataset.from_dict({
        "video": paths,
        "caption": [f"clip {i}" for i in range(len(paths))],
        "id": list(range(len(paths))),
        "boxes": [[[0.0, 0.0, 1.0, 1.0]] * (i + 1) for i in range(len(paths))],  # a different count per clip
        "question": [f"what moves in clip {i}?" for i in range(len(paths))],
    })  # fmt: skip


@pytest.mark.parametrize("streaming", [False, True])
def test_every_key_of_a_record_travels_to_the_batch(clips, streaming):
    records = records_with_annotations(clips)
    records = records.to_iterable_dataset() if streaming else records
    decoder = VideoClipDecoder(2, sampling="middle", transform=EvalTransform(16))
    samples = list(decode_videos(records, decoder))
    assert set(samples[0]) == {"pixel_values", "caption", "id", "boxes", "question"}  # only `video` is consumed
    batch = VideoCollator()(samples)
    assert batch["pixel_values"].shape == (4, 2, 3, 16, 16)
    assert batch["ids"].tolist() == [0, 1, 2, 3] and batch["ids"].dtype == torch.long
    assert batch["captions"] == ["clip 0", "clip 1", "clip 2", "clip 3"]
    assert [len(b) for b in batch["boxes"]] == [1, 2, 3, 4] and batch["question"][3] == "what moves in clip 3?"


def test_collator_decides_keys_from_the_whole_batch():
    clip = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"key 'caption' is in 1 of the 2 samples"):
        VideoCollator()([{"pixel_values": clip}, {"pixel_values": clip, "caption": "late"}])
    batch = VideoCollator()([{"pixel_values": clip, "label": None}, {"pixel_values": clip, "label": None}])
    assert set(batch) == {"pixel_values"}  # a key that is None everywhere is left out
    boxes = VideoCollator()([{"pixel_values": clip, "boxes": torch.ones(k, 4)} for k in (1, 3)])["boxes"]
    assert [b.shape[0] for b in boxes] == [1, 3]  # unequal shapes stay a list
    assert VideoCollator()([{"pixel_values": clip, "score": 0.5}])["score"].dtype == torch.float32


def test_sample_transforms_see_the_whole_sample(clips):
    class FlipWithBoxes:  # a clip transform that must also move the boxes: the `transform_sample` hook
        def __call__(self, clip, generator=None):
            raise AssertionError("the hook must be used instead")

        def transform_sample(self, sample, generator=None):
            boxes = [[1.0 - x1, y0, 1.0 - x0, y1] for x0, y0, x1, y1 in sample["boxes"]]
            return {**sample, "pixel_values": EvalTransform(16)(sample["pixel_values"].flip(-1)), "boxes": boxes}

    class AddAnswer(SampleTransform):
        def __call__(self, sample, generator=None):
            return {**ClipTransform(EvalTransform(16))(sample, generator), "answer": "left"}

    record = {"video": clips[0], "boxes": [[0.1, 0.2, 0.3, 0.4]], "question": "where?"}
    flipped = VideoClipDecoder(2, "middle", FlipWithBoxes()).decode_sample(record)
    plain = VideoClipDecoder(2, "middle", EvalTransform(16)).decode_sample(record)
    assert flipped["boxes"] == [pytest.approx([0.7, 0.2, 0.9, 0.4])] and plain["boxes"] == record["boxes"]
    assert flipped["question"] == "where?" and flipped["pixel_values"].shape == plain["pixel_values"].shape
    assert VideoClipDecoder(2, "middle", AddAnswer())(record)["answer"] == "left"
    with pytest.raises(ValueError, match="no 'pixel_values' key"):
        ClipTransform(EvalTransform(16))({"frames": None})


def test_stage2_decoding_is_seeded_per_sample(clips):
    records = records_with_annotations(clips).select_columns(["video", "caption", "id"])

    def decoded(seed, epoch=0, order=None):
        decoder = VideoClipDecoder(4, sampling="rand", transform=Stage2TrainTransform(16), seed=seed)
        decoder.set_epoch(epoch)
        data = decode_videos(records, decoder)
        return {i: data[i]["pixel_values"] for i in (order or range(len(records)))}

    first, again = decoded(3), decoded(3, order=[3, 1, 0, 2])  # another order: another global RNG state
    assert all(torch.equal(first[i], again[i]) for i in first)
    assert not torch.equal(first[0], decoded(4)[0]) and not torch.equal(first[0], decoded(3, epoch=1)[0])


def test_images_are_one_frame_videos_of_the_same_decoder(tmp_path):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    with VideoReader(str(tmp_path / "a.png"), backend="image") as reader:
        assert reader.num_frames == 1 and reader.get_frames([0, 0]).shape == (2, 3, 20, 30)
    decoder = ImageClipDecoder(Stage2TrainTransform(16), seed=0)
    assert isinstance(decoder, VideoClipDecoder) and decoder.num_frames == 1
    sample = decoder({"video": str(tmp_path / "a.png"), "caption": "noise", "__index__": 7})
    assert sample["pixel_values"].shape == (1, 3, 16, 16) and set(sample) == {"pixel_values", "caption"}
    again = decoder({"video": str(tmp_path / "a.png"), "caption": "noise", "__index__": 7})
    assert torch.equal(sample["pixel_values"], again["pixel_values"])  # seeded per sample, as videos
    stats = DecodeStats(max_bad_fraction=0.0, min_samples=1)
    with pytest.raises(TooManyDecodeFailures):
        ImageClipDecoder(EvalTransform(16), stats=stats)({"video": str(tmp_path / "nope.png")})


def test_eval_transform_and_video_processor_share_one_implementation(clips):
    frames = VideoReader(clips[0]).get_frames(range(4))
    processor = UMTVideoProcessor(size={"shortest_edge": 24}, crop_size={"height": 16, "width": 16})
    from_processor = processor(frames, return_tensors="pt")["pixel_values"][0]
    assert torch.equal(EvalTransform(16, shortest_edge=24)(frames), from_processor)
    squash = UMTVideoProcessor(size={"height": 16, "width": 16}, do_center_crop=False, resample=3)
    assert torch.equal(EvalTransform(16, keep_aspect_ratio=False)(frames), squash(frames, return_tensors="pt")["pixel_values"][0])
    views = eval_views(frames, 24, (16, 16), num_temporal_clips=2, num_spatial_crops=3)
    assert views.shape == (6, 2, 3, 16, 16)
    with pytest.raises(ValueError, match="num_temporal_clips=3"):
        eval_views(frames, 24, (16, 16), num_temporal_clips=3)


def test_multi_view_decoding_equals_the_video_processor(clips):
    processor = UMTVideoProcessor(size={"shortest_edge": 24}, crop_size={"height": 16, "width": 16})
    decoder = MultiViewClipDecoder(processor, num_frames=3, num_temporal_clips=2, num_spatial_crops=3)
    expected = processor(clips[1], do_sample_frames=True, num_frames=3, num_temporal_clips=2, num_spatial_crops=3,
                         return_tensors="pt")["pixel_values"]  # fmt: skip
    assert decoder.num_views == 6 and torch.equal(decoder.decode(clips[1]), expected)
    single = MultiViewClipDecoder(processor, num_frames=3)
    assert single.decode(clips[1]).shape == (3, 3, 16, 16)
    with pytest.raises(ValueError, match="num_clips=2 needs sampling='sparse_test'"):
        VideoClipDecoder(3, sampling="rand", num_clips=2)


@pytest.mark.parametrize("streaming", [False, True])
def test_a_table_source_keeps_extra_columns_for_the_batch(clips, tmp_path, streaming):
    rows = [{"video": path, "label": i % 2, "boxes": [[0.1 * i, 0.2, 0.5, 0.6]], "question": f"q{i}", "note": "x"}
            for i, path in enumerate(clips)]  # fmt: skip
    (tmp_path / "qa.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    records = records_from_table(tmp_path / "qa.jsonl", streaming=streaming, extra_columns=("boxes", "question"),
                                 cache_dir=str(tmp_path / "cache"))  # fmt: skip
    batch = VideoCollator()(list(decode_videos(records, VideoClipDecoder(2, "middle", EvalTransform(16)))))
    assert set(batch) == {"pixel_values", "labels", "boxes", "question"}  # "note" was not asked for
    assert batch["question"] == ["q0", "q1", "q2", "q3"] and batch["boxes"][2] == [[0.2, 0.2, 0.5, 0.6]]
    with pytest.raises(ValueError, match="extra_column 'answer' is not a column"):
        records_from_table(tmp_path / "qa.jsonl", extra_columns=("answer",), cache_dir=str(tmp_path / "cache"))


def test_every_lazy_export_of_processors_resolves_to_its_home_module():
    import importlib

    import processors

    for name in processors.__all__:
        value = getattr(processors, name)
        home = importlib.import_module(f"processors.{processors._MODULE_OF[name]}")
        assert getattr(home, name) is value and name in home.__all__, name
