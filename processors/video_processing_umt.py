"""UMTVideoProcessor: the evaluation-time video processor of UMT, a transformers `BaseVideoProcessor`.

Pipeline per video: decode (our decord / PyAV reader, no torchcodec needed) -> sample frames with the
official test rule -> resize the short side (bilinear) -> one centre crop, or 3 crops along the long side ->
rescale and ImageNet-normalise. Output `pixel_values` is float32 (B * V, T, C, H, W), where V = num_views =
num_temporal_clips * num_spatial_crops; see `UMTVideoProcessor` for the order of the views.

This module must not import `modeling_umt`: `modeling_umt/__init__.py` imports it to register the class with
`AutoVideoProcessor`.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    PILImageResampling,
    SizeDict,
    pil_torch_interpolation_mapping,
)
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata

from .sampling import middle_indices, sparse_test_indices
from .transforms import eval_views
from .video_io import BACKENDS, VideoReader

__all__ = ["UMTVideoProcessor", "UMTVideoProcessorKwargs"]

FRAME_SAMPLING_RULES = ("sparse_test", "middle")
DEFAULT_NUM_FRAMES = 8  # UMT's clip length (UMTConfig.num_frames): what a file is sampled to when num_frames is unset


class UMTVideoProcessorKwargs(VideosKwargs, total=False):
    r"""
    num_temporal_clips (`int`, *optional*, defaults to 1):
        Temporal views per video, sampled with the official multi-clip test rule (`sparse_test`, clip c of n).
        Values above 1 need `do_sample_frames=True`.
    num_spatial_crops (`int`, *optional*, defaults to 1):
        Spatial views per clip: 1 is a centre crop; 3 are left/centre/right (or top/centre/bottom) crops along
        the long side, as the official multi-view test.
    frame_sampling (`str`, *optional*, defaults to `"sparse_test"`):
        Frame rule when `do_sample_frames=True`: `"sparse_test"` (Stage-1 fine-tuning val/test) or `"middle"`
        (Stage-2 evaluation).
    video_backend (`str`, *optional*, defaults to `"auto"`):
        Decoder for paths, URLs and bytes: `"auto"` (decord, then PyAV), `"decord"` or `"pyav"`.
    """

    num_temporal_clips: int
    num_spatial_crops: int
    frame_sampling: str
    video_backend: str


def _size_dict(size: SizeDict | dict) -> SizeDict:
    return size if isinstance(size, SizeDict) else SizeDict(**size)


def _is_encoded(video: Any) -> bool:
    """True for inputs that still need decoding: paths, URLs, bytes and binary file objects."""
    return isinstance(video, (str, os.PathLike, bytes, bytearray, memoryview)) or (
        hasattr(video, "read") and not isinstance(video, (np.ndarray, torch.Tensor))
    )


class UMTVideoProcessor(BaseVideoProcessor):
    r"""
    Video processor for UMT video classification and retrieval at evaluation time.

    Inputs: a path, http(s) URL, bytes or binary file object (decoded with `processors.video_io`, decord by
    default, PyAV as fallback), decoded frames (numpy / torch, (T, H, W, C) or (T, C, H, W)), a list of PIL
    frames, or a list of any of these for a batch.

    Frame sampling: a path, URL or bytes is decoded at only the frames returned. By default
    (`do_sample_frames=None`) a file gives `num_frames` frames (8, UMT's clip length, when `num_frames` is unset)
    chosen with `frame_sampling` -- the official fine-tuning test rule by default, "middle" for video-text -- and
    decoded frames (arrays, tensors, PIL lists) are used as given. `do_sample_frames=True` (what the
    video-classification pipeline passes) samples both, with an explicit `num_frames` or `fps`, clip c of
    `num_temporal_clips` (multi-clip testing needs it); `do_sample_frames=False` keeps every frame of a file too.
    `UMTVideoProcessor.from_model_config(config)` sizes a processor for a saved model.

    Returns a `BatchFeature` with `pixel_values`: float32 (B * V, T, C, H, W) with V = `num_views(...)` =
    num_temporal_clips * num_spatial_crops. Views are grouped by video (video 0's V views first); within a
    video the order is clip-major: (clip 0, crop 0), (clip 0, crop 1), ..., (clip 1, crop 0), ... With the
    defaults V = 1 and the shape is simply (B, T, C, H, W). Combine per-view logits with `merge_views`, which
    averages per-view softmax probabilities as the official multi-view test does.

    Resizing: the short side goes to S = `size["shortest_edge"]` and the long side to `int(S * long / short)` as
    in the official `Resize`; interpolation is bilinear with antialiasing (the official code used OpenCV without
    antialiasing; the two differ by a few grey levels on downscaled frames).

    The video-classification pipeline scores the first view only; use the processor, the model and
    `merge_views` for multi-view testing.
    """

    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 224}
    default_to_square = False
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    # None: a file (path, URL, bytes) is sampled to `num_frames` frames (DEFAULT_NUM_FRAMES when unset), decoded
    # frames are used as given (as VideoMAE); True / False: always / never sample.
    do_sample_frames = None
    num_frames = None
    fps = None
    num_temporal_clips = 1
    num_spatial_crops = 1
    frame_sampling = "sparse_test"
    video_backend = "auto"
    valid_kwargs = UMTVideoProcessorKwargs
    model_input_names = ["pixel_values"]

    def __init__(self, **kwargs: Unpack[UMTVideoProcessorKwargs]):
        super().__init__(**kwargs)
        self._check_view_settings(
            self.num_temporal_clips, self.num_spatial_crops, self.frame_sampling, self.video_backend
        )

    @staticmethod
    def _check_view_settings(num_temporal_clips: int, num_spatial_crops: int, frame_sampling: str, video_backend: str):
        for name, value in (("num_temporal_clips", num_temporal_clips), ("num_spatial_crops", num_spatial_crops)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if frame_sampling not in FRAME_SAMPLING_RULES:
            raise ValueError(f"frame_sampling must be one of {FRAME_SAMPLING_RULES}, got {frame_sampling!r}")
        if frame_sampling == "middle" and num_temporal_clips != 1:
            raise ValueError(
                f"frame_sampling='middle' takes one clip per video; got num_temporal_clips={num_temporal_clips} "
                "(use frame_sampling='sparse_test' for multi-clip testing)"
            )
        if video_backend not in BACKENDS:
            raise ValueError(f"video_backend must be one of {BACKENDS}, got {video_backend!r}")

    @classmethod
    def from_model_config(cls, config, **overrides) -> "UMTVideoProcessor":
        """The evaluation processor that fits a UMT model config (read by attribute; no `modeling_umt` import).

        - A video model (`UMTConfig`: classifier, Stage-1 student): `num_frames` frames by the official fine-tuning
          test rule ("sparse_test"), short side resized to `image_size` (bilinear), one `image_size` centre crop.
        - A video-text model (a config with a `vision_config`, `UMTRetrievalConfig`): the vision config's frames by
          the official video-text test rule ("middle"), resized straight to `image_size` x `image_size` (bicubic,
          aspect ratio not kept), as `EvalTransform(keep_aspect_ratio=False)` and the retrieval evaluation.
        `overrides` replace any of these settings.
        """
        vision = getattr(config, "vision_config", None)
        video_config = vision if vision is not None else config
        num_frames, image_size = getattr(video_config, "num_frames", None), getattr(video_config, "image_size", None)
        if not isinstance(num_frames, int) or image_size is None:
            raise ValueError(
                f"`config` must be a UMT config with `num_frames` and `image_size` (or a `vision_config` holding "
                f"them), got {type(config).__name__} with num_frames={num_frames!r}, image_size={image_size!r}"
            )
        height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if vision is not None:
            settings = dict(size={"height": height, "width": width}, do_center_crop=False,
                            resample=PILImageResampling.BICUBIC, frame_sampling="middle")  # fmt: skip
        else:
            settings = dict(size={"shortest_edge": min(height, width)}, crop_size={"height": height, "width": width},
                            frame_sampling="sparse_test")  # fmt: skip
        return cls(**{**settings, "num_frames": num_frames, **overrides})

    def num_views(self, num_temporal_clips: int | None = None, num_spatial_crops: int | None = None) -> int:
        """Views per video in `pixel_values`: num_temporal_clips * num_spatial_crops (instance defaults if None)."""
        clips = self.num_temporal_clips if num_temporal_clips is None else num_temporal_clips
        crops = self.num_spatial_crops if num_spatial_crops is None else num_spatial_crops
        return clips * crops

    def preprocess(self, videos, **kwargs: Unpack[UMTVideoProcessorKwargs]) -> BatchFeature:
        """Process a video or a batch of videos; see the class docstring for inputs and the output layout.

        Returns:
            BatchFeature with `pixel_values` float32 (B * num_views, T, C, H, W) (a list of (T, C, H, W) tensors
            when `return_tensors` is None).
        """
        settings = {
            name: kwargs[name] if kwargs.get(name) is not None else getattr(self, name)
            for name in (
                "num_temporal_clips",
                "num_spatial_crops",
                "frame_sampling",
                "video_backend",
                "do_sample_frames",
            )
        }
        self._check_view_settings(
            settings["num_temporal_clips"],
            settings["num_spatial_crops"],
            settings["frame_sampling"],
            settings["video_backend"],
        )
        if settings["num_temporal_clips"] > 1 and not settings["do_sample_frames"]:
            raise ValueError(
                f"num_temporal_clips={settings['num_temporal_clips']} needs do_sample_frames=True: the clips are "
                "sampled from the whole video"
            )
        if settings["do_sample_frames"] is None:  # a file: sample (decode only what is returned); frames: keep
            if _is_encoded(videos) or (isinstance(videos, (list, tuple)) and videos and all(map(_is_encoded, videos))):
                kwargs["do_sample_frames"] = True
                if kwargs.get("num_frames") is None and self.num_frames is None and (kwargs.get("fps") or self.fps) is None:
                    kwargs["num_frames"] = DEFAULT_NUM_FRAMES
            else:
                kwargs["do_sample_frames"] = False
            # this class's own preprocess again (not a subclass override, which already wraps this call)
            return UMTVideoProcessor.preprocess(self, videos, **kwargs)
        if settings["video_backend"] != self.video_backend:
            # The decoding hook does not receive call-time kwargs; a shallow copy carries the backend there.
            processor = copy.copy(self)
            processor.video_backend = settings["video_backend"]
            return UMTVideoProcessor.preprocess(processor, videos, **kwargs)
        batch = super().preprocess(videos, **kwargs)
        batch["pixel_values"] = batch.pop("pixel_values_videos")
        return batch

    def sample_frames(
        self,
        metadata: VideoMetadata,
        num_frames: int | None = None,
        fps: int | float | None = None,
        frame_sampling: str | None = None,
        num_temporal_clips: int | None = None,
        **kwargs,
    ) -> np.ndarray:
        """Frame indices for one video: `num_temporal_clips` clips of `num_frames`, concatenated.

        Args:
            metadata: needs `total_num_frames` (and `fps` when sampling by `fps`).
            num_frames: frames per clip; or give `fps` to take `total / video_fps * fps` frames.
        Returns:
            int64 array (num_temporal_clips * num_frames,): clip 0's indices, then clip 1's, ...
        """
        num_frames = num_frames if num_frames is not None else self.num_frames
        fps = fps if fps is not None else self.fps
        rule = frame_sampling or self.frame_sampling
        clips = num_temporal_clips or self.num_temporal_clips
        total = int(metadata.total_num_frames)
        if num_frames is not None and fps is not None:
            raise ValueError(f"num_frames ({num_frames}) and fps ({fps}) are mutually exclusive; pass only one")
        if num_frames is None:
            if fps is None:
                raise ValueError("do_sample_frames=True needs num_frames (frames per clip) or fps; got neither")
            if not metadata.fps:
                raise ValueError(f"sampling at fps={fps} needs the video's own frame rate, which its metadata lacks")
            num_frames = max(1, int(total / metadata.fps * fps))
        if rule == "middle":
            return middle_indices(num_frames, total)
        return np.concatenate([sparse_test_indices(num_frames, total, c, clips) for c in range(clips)])

    def fetch_videos(self, video_url_or_urls, sample_indices_fn=None, video_backend: str | None = None):
        """Decode paths / URLs / bytes / file objects with `processors.video_io` (decord, then PyAV).

        Only the sampled frames are decoded. Returns (videos, metadata): for one input a uint8 (T, C, H, W) tensor
        and its `VideoMetadata`; for a list, a list of each.
        """
        if isinstance(video_url_or_urls, (list, tuple)):
            decoded = [self.fetch_videos(v, sample_indices_fn, video_backend) for v in video_url_or_urls]
            return [video for video, _ in decoded], [metadata for _, metadata in decoded]
        with VideoReader(video_url_or_urls, backend=video_backend or self.video_backend) as reader:
            metadata = VideoMetadata(
                total_num_frames=reader.num_frames,
                fps=reader.fps,
                duration=reader.num_frames / reader.fps if reader.fps else None,
            )
            if sample_indices_fn is None:
                indices = np.arange(reader.num_frames)
            else:
                indices = np.asarray(sample_indices_fn(metadata=metadata), dtype=np.int64)
            frames = reader.get_frames(indices)
            # Filled after decoding: asking decord for the size first would cost one more decoded frame.
            metadata.update({"frames_indices": indices.tolist(), "height": frames.shape[-2], "width": frames.shape[-1],
                             "video_backend": reader.backend})  # fmt: skip
            return frames, metadata

    def _decode_and_sample_videos(self, videos, video_metadata, do_sample_frames=None, sample_indices_fn=None):
        # transformers' own path only accepts str for encoded videos and decodes them with torchcodec; route
        # every encoded input (str, PathLike, bytes, file object) through our decoder instead.
        if _is_encoded(videos):
            videos = [videos]
        if isinstance(videos, (list, tuple)) and videos and all(_is_encoded(v) for v in videos):
            return self.fetch_videos(list(videos), sample_indices_fn if do_sample_frames else None)
        return super()._decode_and_sample_videos(videos, video_metadata, do_sample_frames, sample_indices_fn)

    def _preprocess(
        self,
        videos: list[torch.Tensor],
        do_resize: bool,
        size: SizeDict,
        resample,
        do_center_crop: bool,
        crop_size: SizeDict,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean,
        image_std,
        return_tensors=None,
        num_temporal_clips: int | None = None,
        num_spatial_crops: int | None = None,
        **kwargs,
    ) -> BatchFeature:
        clips = num_temporal_clips or self.num_temporal_clips
        crops = num_spatial_crops or self.num_spatial_crops
        if crops > 1 and not do_center_crop:
            raise ValueError(f"num_spatial_crops={crops} needs do_center_crop=True and a crop_size")
        views = []
        for video in videos:  # (clips * T, C, H, W) uint8
            out = self.views(video, clips, crops, do_resize, size, resample, do_center_crop, crop_size,
                             do_rescale, rescale_factor, do_normalize, image_mean, image_std)  # fmt: skip
            views.extend(out.unbind(0))
        return BatchFeature(data={"pixel_values_videos": views}, tensor_type=return_tensors)

    def views(
        self,
        video: torch.Tensor,
        num_temporal_clips: int = 1,
        num_spatial_crops: int = 1,
        do_resize: bool | None = None,
        size: SizeDict | dict | None = None,
        resample=None,
        do_center_crop: bool | None = None,
        crop_size: SizeDict | dict | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean=None,
        image_std=None,
    ) -> torch.Tensor:
        """The views of one decoded video with this processor's settings (None: the instance's own).

        Args:
            video: uint8 (num_temporal_clips * T, C, H, W), the clips one after the other.
        Returns:
            float32 (num_temporal_clips * num_spatial_crops, T, C, H, W), clip-major (`processors.transforms.eval_views`,
            the one implementation shared with `EvalTransform`).
        """
        pick = lambda value, default: default if value is None else value  # noqa: E731
        size, crop_size = _size_dict(pick(size, self.size)), _size_dict(pick(crop_size, self.crop_size))
        resize = None
        if pick(do_resize, self.do_resize):
            if size.shortest_edge and not size.longest_edge:
                resize = size.shortest_edge
            elif size.height and size.width:
                resize = (size.height, size.width)
            else:
                raise ValueError(f"size must hold 'shortest_edge' or 'height' and 'width', got {dict(size)}")
        resample = pick(resample, self.resample)
        if isinstance(resample, (PILImageResampling, int)):
            resample = pil_torch_interpolation_mapping[resample]
        elif resample is None:  # transformers' default for a processor without a resample
            resample = InterpolationMode.BILINEAR
        normalize = pick(do_normalize, self.do_normalize)
        return eval_views(
            video,
            resize,
            (crop_size.height, crop_size.width) if pick(do_center_crop, self.do_center_crop) else None,
            resample,
            num_temporal_clips,
            num_spatial_crops,
            pick(rescale_factor, self.rescale_factor) if pick(do_rescale, self.do_rescale) else None,
            pick(image_mean, self.image_mean) if normalize else None,
            pick(image_std, self.image_std) if normalize else None,
        )

    @staticmethod
    def merge_views(logits: torch.Tensor, num_views: int) -> torch.Tensor:
        """Combine multi-view logits into per-video class probabilities, as the official multi-view test.

        Args:
            logits: (B * num_views, num_labels), views grouped by video as `pixel_values` orders them.
            num_views: views per video (`num_views()`).
        Returns:
            float tensor (B, num_labels): the mean over views of the per-view softmax.
        """
        if logits.ndim != 2 or logits.shape[0] % num_views:
            raise ValueError(
                f"logits must be (B * num_views, num_labels) with num_views={num_views}, "
                f"got shape {tuple(logits.shape)}"
            )
        return logits.float().softmax(-1).reshape(-1, num_views, logits.shape[-1]).mean(1)


# Saved folders carry this module (and the ones it imports) with an `auto_map`, so that
# `AutoVideoProcessor.from_pretrained(folder, trust_remote_code=True)` works without this package.
UMTVideoProcessor.register_for_auto_class("AutoVideoProcessor")
