"""UMTDetectionVideoProcessor: the test-time processor of `UMTForVideoActionDetection` (official AVA protocol).

Per video: (decode and sample frames as `UMTVideoProcessor`) -> resize the short side to 256, long side
`int(256 * long / short)` -> no crop -> Detectron normalisation on 0-255 values (mean (122.7717, 115.9465, 102.9801),
std 57.375) -> zero-pad height and width to multiples of 16 (the official test collator); a batch is padded to its
largest frame. Person boxes given in pixels of the original frames are rescaled to the processed frames.
`post_process_action_detection` turns the model's logits into per-clip action scores (sigmoid x box score) and boxes
in original pixels. Test-time box enlargement and training jitter are data code (`processors.detection`).

This module must not import `modeling_umt`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers.image_processing_utils import BatchFeature

from .detection import AVA_MEAN, AVA_STD
from .transforms import shortest_edge_size
from .video_processing_umt import UMTVideoProcessor

__all__ = ["UMTDetectionVideoProcessor"]


class UMTDetectionVideoProcessor(UMTVideoProcessor):
    r"""
    Video processor for UMT action detection (AVA). Inputs as `UMTVideoProcessor`, plus optional `boxes`: one (K_i, 4)
    xyxy tensor per video, in pixels of the original frames.

    Returns a `BatchFeature` with `pixel_values` float32 (B, T, C, H, W) -- the resized frames, zero-padded to a
    common size that is a multiple of `pad_multiple` -- and, when boxes were given, `boxes`: a list of B (K_i, 4)
    tensors in pixels of the resized frames (what `UMTForVideoActionDetection` takes; enlarge them with
    `processors.detection.extend_boxes` for the official test protocol).
    """

    image_mean = list(AVA_MEAN)
    image_std = list(AVA_STD)
    size = {"shortest_edge": 256}
    do_center_crop = False  # the whole (resized) frame; crop_size stays the parent's, unused
    do_rescale = False  # the Detectron mean / std apply to 0-255 values
    pad_multiple = 16

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) a frame of `height` x `width` has after this processor's resize (before padding)."""
        return shortest_edge_size(int(height), int(width), self.size["shortest_edge"])

    def preprocess(self, videos, boxes: Sequence[torch.Tensor] | None = None, **kwargs) -> BatchFeature:
        """Process a video or a batch; with `boxes` (one (K_i, 4) tensor per video, original pixels) also return
        them rescaled to the processed frames. See the class docstring."""
        if kwargs.get("num_temporal_clips", 1) != 1 or kwargs.get("num_spatial_crops", 1) != 1:
            raise ValueError("action detection takes one view per clip: num_temporal_clips and num_spatial_crops = 1")
        return_tensors = kwargs.pop("return_tensors", None)
        batch = super().preprocess(videos, return_tensors=None, **kwargs)
        frames = batch["pixel_values"]  # list of (T, C, h, w), unpadded
        sizes = [tuple(f.shape[-2:]) for f in frames]
        m = self.pad_multiple
        height = max(-(-h // m) * m for h, _ in sizes)
        width = max(-(-w // m) * m for _, w in sizes)
        padded = [F.pad(f, (0, width - f.shape[-1], 0, height - f.shape[-2])) for f in frames]
        data = {"pixel_values": torch.stack(padded) if return_tensors == "pt" else padded}
        if boxes is not None:
            if len(boxes) != len(frames):
                raise ValueError(f"`boxes` must hold one (K, 4) tensor per video ({len(frames)}), got {len(boxes)}.")
            originals = self._original_sizes(videos, len(frames))
            data["boxes"] = [
                torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4)
                * torch.tensor([w / w0, h / h0, w / w0, h / h0])
                for b, (h, w), (h0, w0) in zip(boxes, sizes, originals)
            ]
        return BatchFeature(data=data)

    @staticmethod
    def _original_sizes(videos, count: int) -> list[tuple[int, int]]:
        """(height, width) of each input video's frames (decoded arrays / tensors / PIL lists; encoded files are not
        supported with `boxes`)."""
        items = [videos] if count == 1 and not isinstance(videos, (list, tuple)) else list(videos)
        if count == 1 and len(items) != 1:  # one video given as a list of PIL frames
            items = [videos]
        sizes = []
        for video in items:
            first = video[0] if isinstance(video, (list, tuple)) else video
            if hasattr(first, "size") and not isinstance(first, torch.Tensor) and not hasattr(first, "shape"):
                w, h = first.size  # PIL
            elif hasattr(first, "shape"):
                shape = tuple(first.shape)
                h, w = (shape[-2], shape[-1]) if shape[-3] in (1, 3) else (shape[-3], shape[-2])
            else:
                raise ValueError("`boxes` need decoded frames (arrays, tensors or PIL images) to know their size.")
            sizes.append((int(h), int(w)))
        return sizes

    def post_process_action_detection(
        self,
        outputs,
        boxes: Sequence[torch.Tensor],
        box_scores: Sequence[torch.Tensor] | None = None,
        target_sizes: Sequence[Sequence[int]] | torch.Tensor | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Per-clip detections from `UMTForVideoActionDetection` outputs, as the official post-processor.

        Args:
            outputs: the model output (or its logits), (sum K_i, num_labels).
            boxes: the B (K_i, 4) boxes the scores belong to, in pixels of the processed frames (the un-enlarged
                proposals: the official post-processor pairs scores with the boxes before enlargement).
            box_scores: B (K_i,) person-detector scores (None: 1).
            target_sizes: B (height, width) of the original frames; boxes are rescaled there (None: left as given).
        Returns:
            B dicts {"scores": (K_i, num_labels) sigmoid(logits) x box score, "boxes": (K_i, 4) xyxy}.
        """
        logits = outputs.logits if hasattr(outputs, "logits") else outputs
        counts = [len(b) for b in boxes]
        if logits.shape[0] != sum(counts):
            raise ValueError(f"`outputs` has {logits.shape[0]} rows but `boxes` hold {sum(counts)} boxes.")
        if target_sizes is not None and len(target_sizes) != len(boxes):
            raise ValueError(f"`target_sizes` must have one (height, width) per clip ({len(boxes)}).")
        results = []
        for i, (scores, b) in enumerate(zip(logits.float().sigmoid().split(counts), boxes)):
            b = torch.as_tensor(b, dtype=torch.float32).to(scores.device)
            if box_scores is not None:
                scores = scores * torch.as_tensor(box_scores[i], dtype=torch.float32).to(scores.device).reshape(-1, 1)
            if target_sizes is not None:
                h0, w0 = (int(v) for v in target_sizes[i])
                h, w = self.resized_size(h0, w0)
                b = b * torch.tensor([w0 / w, h0 / h, w0 / w, h0 / h], device=b.device)
            results.append({"scores": scores, "boxes": b})
        return results
