"""A teacher around a transformers vision tower: CLIP, SigLIP, DINOv2 and DINOv2 with registers.

The paper shows that UMT works with other image teachers than CLIP. `TransformersTeacher` wraps the vision tower
of a transformers model, loaded by its own class (`config.architectures`) or `AutoModel`, and reads three things off
it through transformers' public forward plus one forward pre-hook:

- intermediate features: `output_hidden_states=True` gives the residual stream after every block; the patch tokens
  of the returned blocks go through the tower's final norm and, where the model has one, its projection:

    family (config.model_type)      prefix tokens          final norm         projection
    clip_vision_model               class                  post_layernorm     visual_projection (CLIPModel,
                                                                              CLIPVisionModelWithProjection); none
                                                                              for CLIPVisionModel
    siglip_vision_model             none                   post_layernorm     none (SigLIP's image embedding is
                                                                              the pooling head's, one per image)
    dinov2                          class                  layernorm          none
    dinov2_with_registers           class + registers      layernorm          none

- class-token attention of the last block: a forward pre-hook keeps the (already normed) input of the last
  block's self-attention, and the class token's row of softmax(q k^T / sqrt(d)) is recomputed from its q and k
  projections, so the tower runs with whatever attention kernel it was loaded with (SDPA by default); no eager
  attention and no L x L map. Heads are averaged; the class -> prefix entries (class token and registers) are
  dropped, so a row sums to 1 minus the attention paid to them, as with the CLIP teacher.
- SigLIP has no class token. Its vision tower ends in an attention-pooling head (MAP head): a learned probe attends
  over the post-norm output of the last block, and that pooled vector is SigLIP's image embedding, the role the
  class token plays in CLIP. The teacher's "class-token attention" for SigLIP is the probe's attention over the
  patches (head average of the MAP head's attention); there are no prefix tokens, so each row sums to 1. A SigLIP
  tower without its head (`vision_use_head=False`) is refused.

Resolution: the teacher runs at `image_size` (default the checkpoint's); frames are resized bicubically to it as for
every teacher, and the tower interpolates its position table with its own rule (bicubic for CLIP and SigLIP;
antialiased bicubic for DINOv2). `build_teacher("hf:...")` picks the size that gives the student's token grid.
"""

import os
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
import transformers
from torch import nn

from .base import ImageTeacher, check_not_partitioned, class_token_attention


@dataclass(frozen=True)
class _Family:
    """Where a family keeps its pieces. Attribute names are those of the installed transformers (v5)."""

    norm: str  # the tower's final norm
    blocks: str  # dotted path from the tower to its list of blocks
    attention: str  # the self-attention of a block (has q_proj, k_proj, head_dim and the scaling below)
    scale: str  # the attention's softmax scale attribute
    class_token: bool  # False: no class token, the MAP head's probe stands in (SigLIP)
    interpolate_kwarg: bool  # the tower's forward takes `interpolate_pos_encoding` (DINOv2 always interpolates)


_FAMILIES = {
    "clip_vision_model": _Family("post_layernorm", "encoder.layers", "self_attn", "scale", True, True),
    "siglip_vision_model": _Family("post_layernorm", "encoder.layers", "self_attn", "scale", False, True),
    "dinov2": _Family("layernorm", "encoder.layer", "attention", "scaling", True, False),
    "dinov2_with_registers": _Family("layernorm", "encoder.layer", "attention", "scaling", True, False),
}
# Checkpoints are loaded by the class they were saved from, so a projection (or a registers model) is not lost to
# AutoModel's choice of base class; anything else goes through AutoModel.
_ARCHITECTURES = ("CLIPModel", "CLIPVisionModel", "CLIPVisionModelWithProjection", "SiglipModel",
                  "SiglipVisionModel", "Dinov2Model", "Dinov2WithRegistersModel")


def _attribute(module: nn.Module, path: str):
    for name in path.split("."):
        module = getattr(module, name)
    return module


def _heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(N, L, heads * hd) -> (N, heads, L, hd)."""
    return x.view(*x.shape[:2], -1, head_dim).transpose(1, 2)


class TransformersTeacher(ImageTeacher):
    """Frozen teacher around a transformers vision tower (see the module docstring for what is read, per family).

    Args:
        model: a CLIPModel / CLIPVisionModel / CLIPVisionModelWithProjection, SiglipModel / SiglipVisionModel,
            Dinov2Model or Dinov2WithRegistersModel. The teacher takes the module over: it is frozen in place
            (pass a copy if you keep training it). A text tower, if any, is not kept.
        image_size: S, the resolution the teacher runs at (a multiple of the patch size); default the config's.
        kwargs: `ImageTeacher` options (num_return_layers, return_interval, normalize, autocast_dtype).
    """

    def __init__(self, model: nn.Module, image_size: Optional[int] = None, **kwargs):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a transformers vision model; got {type(model).__name__}")
        check_not_partitioned(model)
        vision = getattr(model, "vision_model", model)
        model_type = getattr(getattr(vision, "config", None), "model_type", None)
        if model_type not in _FAMILIES:
            raise ValueError(f"model is a {type(model).__name__} (model_type={model_type!r}); expected a vision tower "
                             f"of one of the families {list(_FAMILIES)}")
        family, config = _FAMILIES[model_type], vision.config
        if not family.class_token and not getattr(config, "vision_use_head", False):
            raise ValueError("model is a SigLIP tower with vision_use_head=False: without its attention-pooling head "
                             "it has no class-token attention to mask with")
        patch_size = config.patch_size
        image_size = image_size or config.image_size
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} must be a multiple of the teacher's patch_size={patch_size}")
        projection = getattr(model, "visual_projection", None)
        blocks = _attribute(vision, family.blocks)
        super().__init__(depth=len(blocks), image_size=image_size, num_patches=(image_size // patch_size) ** 2,
                         output_dim=config.hidden_size if projection is None else projection.out_features,
                         num_prefix_tokens=int(family.class_token) + getattr(config, "num_register_tokens", 0),
                         **kwargs)
        self.vision, self.projection, self.family = vision, projection, family
        self.freeze()

    @classmethod
    def from_pretrained(cls, name_or_path: Union[str, os.PathLike], image_size: Optional[int] = None,
                        **kwargs) -> "TransformersTeacher":
        """Load a hub id or a saved directory in float32 (see the class for the families) and wrap it.

        Under DeepSpeed ZeRO-3, call this before `TrainingArguments` is created: afterwards transformers loads every
        model partitioned.
        """
        config = transformers.AutoConfig.from_pretrained(name_or_path)
        architecture = (getattr(config, "architectures", None) or [None])[0]
        model_class = getattr(transformers, architecture) if architecture in _ARCHITECTURES else transformers.AutoModel
        model = model_class.from_pretrained(name_or_path, dtype=torch.float32)
        return cls(model, image_size=image_size, **kwargs)

    @property
    def input_dtype(self) -> torch.dtype:
        return next(self.vision.embeddings.parameters()).dtype

    def forward_frames(self, frames: torch.Tensor,
                       return_cls_attention: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """frames (N, 3, S, S) -> features (K, N, HW, D_out) float32, cls attention (N, HW) float32 or None."""
        family, P = self.family, self.num_prefix_tokens
        captured = {}
        hook = None
        if return_cls_attention and family.class_token:
            attention = getattr(_attribute(self.vision, family.blocks)[-1], family.attention)

            def keep_input(module, args, kwargs):
                captured["x"] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

            hook = attention.register_forward_pre_hook(keep_input, with_kwargs=True)
        try:
            extra = {"interpolate_pos_encoding": True} if family.interpolate_kwarg else {}
            out = self.vision(pixel_values=frames, output_hidden_states=True, **extra)
        finally:
            if hook is not None:
                hook.remove()
        length = out.hidden_states[-1].shape[1]
        if length != P + self.num_patches:
            raise ValueError(f"the tower returned {length} tokens per frame; expected {P} prefix tokens + "
                             f"{self.num_patches} patches at image_size={self.image_size}")
        tokens = torch.stack([out.hidden_states[i + 1][:, P:] for i in self.return_index])  # (K, N, HW, D)
        features = getattr(self.vision, family.norm)(tokens)
        if self.projection is not None:
            features = self.projection(features)
        cls_attention = None
        if return_cls_attention:
            if family.class_token:
                x = captured["x"]  # (N, L, D): the normed input of the last block's attention
                hd = attention.head_dim
                q, k = _heads(attention.q_proj(x[:, :1]), hd), _heads(attention.k_proj(x), hd)
                cls_attention = class_token_attention(q, k, getattr(attention, family.scale))
            else:
                cls_attention = self._probe_attention(out.last_hidden_state)
            cls_attention = cls_attention[:, P:]
        return features.float(), cls_attention

    def _probe_attention(self, tokens: torch.Tensor) -> torch.Tensor:
        """SigLIP: the MAP head's probe attention over the post-norm tokens (N, L, D) -> (N, L), head average."""
        mha = self.vision.head.attention  # nn.MultiheadAttention with one packed in-projection
        w_q, w_k, _ = mha.in_proj_weight.chunk(3)
        b_q, b_k, _ = mha.in_proj_bias.chunk(3)
        probe = self.vision.head.probe.to(tokens.dtype)  # (1, 1, D)
        q = nn.functional.linear(probe, w_q, b_q).expand(tokens.shape[0], -1, -1)
        k = nn.functional.linear(tokens, w_k, b_k)
        return class_token_attention(_heads(q, mha.head_dim), _heads(k, mha.head_dim), mha.head_dim ** -0.5)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, family={type(self.vision).__name__}"
