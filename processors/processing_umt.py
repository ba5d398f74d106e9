"""UMTProcessor: the video-text processor of UMT (a transformers `ProcessorMixin`), as CLIPProcessor / XCLIPProcessor.

One call turns captions and videos (or images, as 1-frame videos) into what `UMTForVideoTextRetrieval` takes:

    from transformers import AutoModel, AutoProcessor
    processor = AutoProcessor.from_pretrained("outputs/stage2/model")    # a UMTProcessor
    model = AutoModel.from_pretrained("outputs/stage2/model")
    inputs = processor(text=["a man is cooking", "a dog runs"], videos=["clip.mp4", "other.mp4"])
    outputs = model(**inputs)            # logits_per_video (2, 2): video i vs caption j

`processor(text=..., videos=..., images=...)` returns a `BatchFeature` of torch tensors (`return_tensors="pt"` by
default) with `pixel_values` (B, T, C, H, W) float32 (images: T = 1), `input_ids` (N, L) and `attention_mask` (N, L).
Captions are padded to `max_text_length` (32, the official `max_txt_l`) and truncated to it; they are tokenised as
given (BERT uncased lowercases; the official caption cleaning `processors.video_text.pre_text` is not applied).
Videos go through `UMTVideoProcessor`: a path, URL or bytes is decoded at only the `num_frames` frames it returns.

`UMTProcessor.from_model_config(config, tokenizer)` sizes the video side from a `UMTRetrievalConfig` (frames, image
size) with the official video-text test transform: "middle" frame sampling, a bicubic resize straight to
image_size x image_size (aspect ratio not kept), ImageNet normalisation.

This module must not import `modeling_umt` (it travels with saved folders as remote code, beside
`video_processing_umt.py`).
"""

import os
from typing import Any

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_utils import ChannelDimension, infer_channel_dimension_format, load_image, to_numpy_array
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin

from .video_processing_umt import UMTVideoProcessor, UMTVideoProcessorKwargs

__all__ = ["UMTProcessor", "UMTProcessorKwargs"]

DEFAULT_MAX_TEXT_LENGTH = 32  # the official `max_txt_l` of Stage-2 pre-training and retrieval


class UMTProcessorKwargs(ProcessingKwargs, total=False):
    videos_kwargs: UMTVideoProcessorKwargs


def _image_as_video(image: Any) -> np.ndarray:
    """One image (PIL, array or tensor, HWC or CHW; or a path / URL) -> a uint8-or-float (1, H, W, C) array."""
    if isinstance(image, (str, os.PathLike)):
        image = load_image(str(image))
    array = to_numpy_array(image)
    if array.ndim != 3:
        raise ValueError(f"`images` must hold single images (H, W, C) or (C, H, W); got an array of shape {array.shape}")
    if infer_channel_dimension_format(array) == ChannelDimension.FIRST:
        array = array.transpose(1, 2, 0)
    return array[None]


class UMTProcessor(ProcessorMixin):
    r"""
    Video-text processor of UMT: a `UMTVideoProcessor` and a BERT tokenizer in one object.

    Args:
        video_processor (`UMTVideoProcessor`): pixels of videos and images.
        tokenizer (`PreTrainedTokenizerBase`): the model's BERT tokenizer.
        max_text_length (`int`, defaults to 32): captions are padded and truncated to this many tokens.

    Call `processor(text=None, videos=None, images=None, **kwargs)`:
        text: a caption or a list of captions -> `input_ids`, `attention_mask` (N, max_text_length).
        videos: what `UMTVideoProcessor` takes (paths, URLs, bytes, decoded frames; one or a list) -> `pixel_values`
            (B, T, C, H, W). A file is decoded at only the frames returned (`num_frames`, sampled as the
            processor's `frame_sampling`); pass `do_sample_frames=False` to keep every frame.
        images: an image or a list of images (PIL, arrays, tensors, paths, URLs) -> `pixel_values` (B, 1, C, H, W),
            each image a 1-frame video, as Stage 2 trains on images.
        Give `videos` or `images`, not both. Other keywords go to the tokenizer (`padding`, `max_length`, ...) or
        the video processor (`num_frames`, `do_sample_frames`, ...); `return_tensors` defaults to "pt".
    Returns a `BatchFeature` whose keys `UMTForVideoTextRetrieval.forward` takes as they are.
    """

    valid_processor_kwargs = UMTProcessorKwargs
    model_input_names = ["pixel_values", "input_ids", "attention_mask"]

    def __init__(self, video_processor=None, tokenizer=None, max_text_length: int = DEFAULT_MAX_TEXT_LENGTH, **kwargs):
        if isinstance(max_text_length, bool) or not isinstance(max_text_length, int) or max_text_length < 1:
            raise ValueError(f"`max_text_length` must be a positive integer, got {max_text_length!r}")
        self.max_text_length = max_text_length
        super().__init__(video_processor, tokenizer, **kwargs)

    @classmethod
    def from_model_config(
        cls, config, tokenizer, max_text_length: int = DEFAULT_MAX_TEXT_LENGTH, **video_overrides
    ) -> "UMTProcessor":
        """The processor that fits a `UMTRetrievalConfig` (or any config with a UMT `vision_config`): its frames and
        image size, with the official video-text test transform (see `UMTVideoProcessor.from_model_config`)."""
        return cls(UMTVideoProcessor.from_model_config(config, **video_overrides), tokenizer, max_text_length)

    def __call__(self, text=None, videos=None, images=None, **kwargs) -> BatchFeature:
        if text is None and videos is None and images is None:
            raise ValueError("UMTProcessor needs `text`, `videos` or `images`; got none of them")
        if videos is not None and images is not None:
            raise ValueError("Pass `videos` or `images` to UMTProcessor, not both: each gives `pixel_values`")
        kwargs.setdefault("return_tensors", "pt")
        merged = self._merge_kwargs(UMTProcessorKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs)
        data: dict[str, Any] = {}
        if text is not None:
            # Our padding and length beat the tokenizer's saved init kwargs (e.g. max_length 128); the caller's win.
            given = {**kwargs, **kwargs.get("text_kwargs", {})}
            text_kwargs = {**merged["text_kwargs"], "padding": "max_length", "truncation": True,
                           "max_length": self.max_text_length, "return_token_type_ids": False}  # fmt: skip
            text_kwargs.update({k: v for k, v in merged["text_kwargs"].items() if k in given})
            data.update(self.tokenizer(text, **text_kwargs))
        if videos is not None:
            data.update(self.video_processor(videos, **merged["videos_kwargs"]))
        if images is not None:
            batch = images if isinstance(images, (list, tuple)) else [images]
            if isinstance(images, torch.Tensor) and images.ndim == 4:
                batch = list(images)
            video_kwargs = {**merged["videos_kwargs"], "do_sample_frames": False}
            data.update(self.video_processor([_image_as_video(image) for image in batch], **video_kwargs))
        return BatchFeature(data, tensor_type=merged["text_kwargs"].get("return_tensors", kwargs["return_tensors"]))


# Saved folders carry this module with an `auto_map` (remote code: `trust_remote_code=True` without this package).
UMTProcessor.register_for_auto_class("AutoProcessor")
