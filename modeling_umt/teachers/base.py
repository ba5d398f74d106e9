"""What every UMT teacher is: the `ImageTeacher` base class and its output, `UMTTeacherOutput`.

UMT aligns the student's unmasked tokens with the last K layers of a frozen image encoder, and chooses which tokens
stay visible from the class-token attention of that encoder's last block (semantic masking, see `masking.py`). A
teacher computes both in one pass, treating the frames of a video as independent images.

`ImageTeacher` owns everything the teachers share: the input checks, the one bicubic resize of the video to the
teacher's resolution, autocast, freezing, the regrouping of frames into t-major video tokens and the optional L2
normalisation. An implementation writes one method, `forward_frames`, on a batch of square frames:

    forward_frames(frames (N, 3, S, S), return_cls_attention)
        -> features (K, N, HW, D_out) float32: the patch tokens of the returned layers, each after the teacher's
           own output norm and projection (the UTA targets);
           cls_attention (N, HW) float32 or None: the last block's class-token attention over the PATCH tokens,
           averaged over heads. Prefix tokens (class, registers, ...) are dropped by the implementation.

and sets `image_size`, `num_patches`, `output_dim` and `num_prefix_tokens` through `ImageTeacher.__init__`.

Keeping the teacher out of training: it has no trainable parameters, stays in eval mode whatever `train()` is called
with, and runs under `torch.no_grad()`. Hold it *outside* the model given to `Trainer` or DeepSpeed, e.g. as an
attribute of the trainer that you move to the device yourself. Then it is in no optimizer group, not in any saved
checkpoint, and ZeRO-3 does not partition it: every rank keeps a full copy, which a forward-only model needs anyway.
If it must hang off the student, attach it without registering a submodule
(`object.__setattr__(student, "teacher", teacher)`), or it lands in `state_dict()`.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput


@dataclass
class UMTTeacherOutput(ModelOutput):
    """Targets and attention of a teacher.

    Args:
        hidden_states: (K, B, T*HW, D_out) float32. Patch tokens of the last K blocks, ascending block order,
            each after the teacher's output norm and projection; tokens t-major (frame, then row, then column),
            like the student's. Not L2-normalised unless the teacher was built with `normalize=True`.
        cls_attention: (B, T, HW) float32. The last block's class-token attention over the patch tokens, averaged
            over heads; prefix tokens (class token, registers) are excluded, so for a teacher with prefix tokens a
            row sums to 1 minus the attention paid to them (semantic masking only needs relative weights). None
            if not requested.
    """

    hidden_states: Optional[torch.Tensor] = None
    cls_attention: Optional[torch.Tensor] = None


def return_layer_indices(depth: int, num_return_layers: int, return_interval: float = 1) -> list:
    """The K block indices a teacher returns: [depth - 1 - int(i * interval) for i < K], sorted ascending.

    E.g. [6..11] for a 12-block teacher with K = 6, [7, 9, 11] with K = 3 and interval 2.
    """
    if not 1 <= num_return_layers <= depth:
        raise ValueError(f"num_return_layers={num_return_layers} must be in [1, {depth}] (teacher depth)")
    return_index = sorted(depth - int(i * return_interval) - 1 for i in range(num_return_layers))
    if return_interval < 1 or return_index[0] < 0:
        raise ValueError(f"return_interval={return_interval} must be >= 1 and keep all {num_return_layers} "
                         f"indices inside the {depth} blocks")
    return return_index


def class_token_attention(q_cls: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """q_cls (N, heads, 1, hd), k (N, heads, L, hd) -> (N, L) float32: softmax(q_cls k^T * scale), head average.

    Row 0 of the attention map alone: semantic masking needs only the class token's row, O(L) not O(L^2). Each row
    sums to 1 over all L tokens (the class token's own entry included); the caller drops the prefix entries.
    """
    logits = (q_cls * scale) @ k.transpose(-2, -1)
    return logits.float().softmax(dim=-1).mean(dim=1)[:, 0]  # head average, as in MultiheadAttention's weights


def check_not_partitioned(model: nn.Module) -> None:
    """Refuse a model whose weights DeepSpeed ZeRO-3 has partitioned: each rank would hold only a shard.

    transformers' from_pretrained runs under deepspeed.zero.Init once TrainingArguments has enabled ZeRO-3.
    """
    if any(hasattr(p, "ds_id") for p in model.parameters()):
        raise ValueError("model has ZeRO-3-partitioned parameters; build the teacher before creating "
                         "TrainingArguments with a ZeRO-3 config (the teacher is never partitioned)")


class ImageTeacher(nn.Module, ABC):
    """Base class of the frozen image teachers of UMT (Stage 1 and the Stage-2 UTA loss).

    Args:
        depth: number of blocks L of the teacher.
        image_size: S, the square resolution the teacher runs at; input frames are resized bicubically to it.
        num_patches: HW, patch tokens per frame at that resolution (must equal the student's tokens per frame).
        output_dim: D_out, the width of the returned features (the student's UTA heads must produce it).
        num_prefix_tokens: tokens before the patches in the teacher's sequence (class token and registers).
        num_return_layers: K, how many final blocks to return (6 in every official recipe).
        return_interval: stride between returned blocks (see `return_layer_indices`).
        normalize: L2-normalise the returned features (the official Stage-1 teacher does; Stage 2 leaves it to
            the loss).
        autocast_dtype: None (float32, exact), torch.bfloat16 or torch.float16 to run `forward_frames` under
            `torch.autocast` on the input's device (the official recipe uses fp16 on GPU). Outputs are float32.

    Input `pixel_values` (B, T, 3, H, W) is the student's tensor, ImageNet-normalised as in the official pipeline
    (no renormalisation to the teacher's own statistics).
    """

    def __init__(self, depth: int, image_size: int, num_patches: int, output_dim: int, num_prefix_tokens: int,
                 num_return_layers: int = 6, return_interval: float = 1, normalize: bool = False,
                 autocast_dtype: Optional[torch.dtype] = None):
        super().__init__()
        return_index = return_layer_indices(depth, num_return_layers, return_interval)
        if autocast_dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"autocast_dtype={autocast_dtype} must be None, torch.bfloat16 or torch.float16")
        self.return_index, self.normalize, self.autocast_dtype = return_index, normalize, autocast_dtype
        self.image_size, self.num_patches, self.output_dim = image_size, num_patches, output_dim
        self.num_prefix_tokens = num_prefix_tokens

    def freeze(self) -> None:
        """No gradients and eval mode for every parameter and submodule; subclasses call it once built."""
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "ImageTeacher":
        """Always eval: a parent's `model.train()` must not switch the frozen teacher to train mode."""
        return super().train(False)

    @property
    @abstractmethod
    def input_dtype(self) -> torch.dtype:
        """The dtype frames are cast to before `forward_frames` (that of the patch embedding)."""

    @abstractmethod
    def forward_frames(self, frames: torch.Tensor,
                       return_cls_attention: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """frames (N, 3, S, S) -> features (K, N, HW, D_out) float32, cls_attention (N, HW) float32 or None.

        See the module docstring: features after the output norm and projection; attention over patches only.
        """

    @torch.no_grad()  # not inference_mode: the targets are later used beside tensors that need grad
    def forward(self, pixel_values: torch.Tensor, return_cls_attention: bool = True) -> UMTTeacherOutput:
        """pixel_values (B, T, 3, H, W) -> hidden_states (K, B, T*HW, D_out), cls_attention (B, T, HW) or None."""
        if pixel_values.ndim != 5 or pixel_values.shape[2] != 3:
            raise ValueError(f"pixel_values must be (B, T, 3, H, W); got shape {tuple(pixel_values.shape)}")
        B, T, C, H, W = pixel_values.shape
        S = self.image_size
        x = pixel_values.to(self.input_dtype)
        if (H, W) != (S, S):
            # As the official engine: one bicubic resize of every (frame, channel) plane of the normalised video.
            x = F.interpolate(x.reshape(B, T * C, H, W), size=(S, S), mode="bicubic", align_corners=False)
        frames = x.reshape(B * T, C, S, S)  # b-major, so (B*T, HW) rows regroup into t-major (B, T*HW)
        with torch.autocast(frames.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            features, cls_attention = self.forward_frames(frames, return_cls_attention)
        K, _, HW, D = features.shape
        hidden_states = features.view(K, B, T * HW, D)
        if self.normalize:
            hidden_states = F.normalize(hidden_states, dim=-1)
        if cls_attention is not None:
            cls_attention = cls_attention.reshape(B, T, HW)
        return UMTTeacherOutput(hidden_states=hidden_states, cls_attention=cls_attention)

    def extra_repr(self) -> str:
        return (f"return_index={self.return_index}, image_size={self.image_size}, normalize={self.normalize}, "
                f"num_prefix_tokens={self.num_prefix_tokens}")
