"""The official UMT teacher: a fast CLIP image tower (`UMTTeacher`), the `ImageTeacher` of every CLIP source.

It is the OpenAI CLIP ViT as the official code runs it: QuickGELU, LayerNorm statistics in float32, fused SDPA in
every block, and only the class token's row of the last block's attention (for semantic masking). Targets are the
patch tokens of the returned blocks after `ln_post` and `proj`; the one prefix token (the class token) is dropped.

One forward for every source of weights. Each backend is converted into `CLIPVisionTower`, a small OpenAI
CLIP ViT whose parameter names are those of OpenAI's `visual.*` state dict. These are also the names of the
official UMT teacher files (`vit_b16.pth`, Stage-2 `clip_teacher.*`) and of open_clip's `VisionTransformer`,
so those load as they are, and transformers' CLIP is renamed key by key:

    UMTTeacher.from_preset("clip_b16", pretrained="openai")          # open_clip tag (downloads once)
    UMTTeacher.from_preset("clip_l14", pretrained="vit_l14.pth")     # official extracted file, run at 196 px
    UMTTeacher.from_open_clip("ViT-B-16", pretrained="openai")
    UMTTeacher.from_transformers("openai/clip-vit-base-patch16")
    UMTTeacher.from_official_state_dict("b16_25m.pth")               # Stage-2 checkpoint, `clip_teacher.*` keys

How to keep a teacher out of training: see `base.py`.
"""

import math
import os
from collections import OrderedDict
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

from ..attention import CPU_BF16_ATTENTION, chunked_bf16_attention, cpu_bf16_applies
from .base import ImageTeacher, check_not_partitioned, class_token_attention

# name -> how the official UMT recipes use it. The open_clip names carry QuickGELU, as OpenAI's weights need.
TEACHER_PRESETS = {
    "clip_b16": dict(open_clip_name="ViT-B-16-quickgelu", image_size=224, width=768, patch_size=16),  # D_out 512
    "clip_l14": dict(open_clip_name="ViT-L-14-quickgelu", image_size=196, width=1024, patch_size=14),  # D_out 768
}
_ACTIVATIONS = ("quick_gelu", "gelu")
ATTENTION_IMPLEMENTATIONS = ("sdpa", CPU_BF16_ATTENTION)


# ----------------------------------------------------------------------------------------------------------
# The CLIP image tower (parameter names = OpenAI's `visual.*` state dict)


class LayerNormFp32(nn.LayerNorm):
    """LayerNorm with float32 statistics for half inputs, output in the input's dtype. Input (..., D).

    OpenAI CLIP casts the input to float32 first. We skip that copy (about 10% of a bf16 forward on CPU):
    with float32 weights, the half-input kernels already accumulate in float32 (CPU, CUDA), and autocast
    runs layer_norm in float32 on CUDA anyway. The result is the same to within one half-precision rounding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the activation OpenAI CLIP was trained with (not exact GELU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class CLIPAttention(nn.Module):
    """Multi-head self-attention holding `nn.MultiheadAttention`'s parameters under its names.

    `in_proj_weight` (3D, D) stacks the q, k, v projections. The forward uses fused SDPA (or, with
    `attn_implementation = "umt_cpu_bf16"`, `modeling_umt.attention.chunked_bf16_attention` for bf16 CPU tensors)
    and, on request, computes the class token's attention row alone.
    """

    attn_implementation = "sdpa"

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(f"heads={heads} must be a positive divisor of the width dim={dim}")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.in_proj_weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(3 * dim, dim)))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, return_cls_attention: bool = False):
        """x (N, L, D), token 0 = class token -> output (N, L, D), cls attention (N, L) or None.

        The cls row is softmax(q_0 K^T / sqrt(d)) averaged over heads; each row sums to 1.
        """
        N, L, D = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(N, L, 3, self.heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (N, heads, L, hd)
        if self.attn_implementation == CPU_BF16_ATTENTION and cpu_bf16_applies(q, k, v):
            out = chunked_bf16_attention(q, k, v, self.scale)  # (N, L, heads, hd)
        else:  # (N, heads, L, hd); the fused kernel keeps no L x L map
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        cls_attention = class_token_attention(q[:, :, :1], k, self.scale) if return_cls_attention else None
        return self.out_proj(out.reshape(N, L, D)), cls_attention


class CLIPResidualBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)). Tokens (N, L, D)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, act: str, eps: float):
        super().__init__()
        self.ln_1 = LayerNormFp32(dim, eps=eps)
        self.attn = CLIPAttention(dim, heads)
        self.ln_2 = LayerNormFp32(dim, eps=eps)
        gelu = QuickGELU() if act == "quick_gelu" else nn.GELU()
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(dim, mlp_dim), gelu=gelu, c_proj=nn.Linear(mlp_dim, dim)))

    def forward(self, x: torch.Tensor, return_cls_attention: bool = False):
        """x (N, L, D) -> (N, L, D), cls attention (N, L) or None."""
        out, cls_attention = self.attn(self.ln_1(x), return_cls_attention)
        x = x + out
        return x + self.mlp(self.ln_2(x)), cls_attention


class CLIPVisionTower(nn.Module):
    """OpenAI CLIP's image ViT: conv patch embedding, class token, learned positions, ln_pre, blocks, ln_post, proj.

    Args:
        width, layers, heads: transformer width D, depth L and number of heads.
        patch_size: p; the grid is image_size // p per side, HW = grid**2 patch tokens.
        image_size: input resolution S (square).
        output_dim: columns of `proj` (D_out); None means no projection (D_out = D).
        mlp_dim: hidden width of the MLP, 4 * width by default.
        act: "quick_gelu" (OpenAI weights) or "gelu" (exact; some open_clip-trained weights).
        eps: LayerNorm epsilon (1e-5 in CLIP).
    """

    def __init__(self, width: int, layers: int, heads: int, patch_size: int, image_size: int,
                 output_dim: Optional[int] = None, mlp_dim: Optional[int] = None, act: str = "quick_gelu",
                 eps: float = 1e-5):
        super().__init__()
        if act not in _ACTIVATIONS:
            raise ValueError(f"act={act!r} is not supported; expected one of {_ACTIVATIONS}")
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} must be a multiple of patch_size={patch_size}")
        self.image_size, self.patch_size, self.grid_size = image_size, patch_size, image_size // patch_size
        self.layers, self.act = layers, act
        scale = width ** -0.5
        self.conv1 = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid_size ** 2 + 1, width))
        self.ln_pre = LayerNormFp32(width, eps=eps)
        # A ModuleDict only to reproduce the `transformer.resblocks.{i}` key names of the checkpoints.
        self.transformer = nn.ModuleDict({"resblocks": nn.ModuleList(
            CLIPResidualBlock(width, heads, mlp_dim or 4 * width, act, eps) for _ in range(layers)
        )})
        self.ln_post = LayerNormFp32(width, eps=eps)
        self.proj = None if output_dim is None else nn.Parameter(scale * torch.randn(width, output_dim))
        self.output_dim = width if output_dim is None else output_dim

    def forward(self, images: torch.Tensor, return_index: Sequence[int], return_cls_attention: bool = True):
        """images (N, 3, S, S) -> (features (K, N, HW, D_out) float32, cls attention (N, 1 + HW) float32 or None).

        features[k] = ln_post(patch tokens after block return_index[k]) @ proj; the class token is dropped.
        The cls attention is the last block's, with its cls->cls entry still at index 0. Blocks after the
        last one needed are not run.
        """
        x = self.conv1(images).flatten(2).transpose(1, 2)  # (N, HW, D)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype))  # (N, 1 + HW, D)

        slot = {layer: k for k, layer in enumerate(return_index)}
        last = self.layers - 1 if return_cls_attention else max(return_index)
        # Project each returned layer as soon as it exists, into one float32 buffer: no stack of K residual
        # streams at width D is ever held, only the (usually narrower) D_out outputs.
        features = x.new_empty(len(return_index), x.shape[0], x.shape[1] - 1, self.output_dim, dtype=torch.float32)
        cls_attention = None
        for i, block in enumerate(self.transformer["resblocks"][: last + 1]):
            x, attn = block(x, return_cls_attention=return_cls_attention and i == self.layers - 1)
            if attn is not None:
                cls_attention = attn
            if i in slot:
                tokens = self.ln_post(x[:, 1:])
                features[slot[i]] = tokens if self.proj is None else tokens @ self.proj
        return features, cls_attention


# ----------------------------------------------------------------------------------------------------------
# Weight loading shared by the backends


def resize_positional_embedding(pos: torch.Tensor, grid_size: int) -> torch.Tensor:
    """(1 + g*g, D) -> (1 + grid_size**2, D): bicubic resize of the patch positions; the class row is kept as is.

    Same rule as the official loader (align_corners=False), e.g. 16x16 -> 14x14 to run CLIP-L/14 at 196 px.
    """
    old = math.isqrt(pos.shape[0] - 1)
    if old * old != pos.shape[0] - 1:
        raise ValueError(f"positional_embedding has {pos.shape[0]} rows; expected 1 + a square number of patches")
    if old == grid_size:
        return pos
    grid = pos[1:].float().reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(grid_size, grid_size), mode="bicubic", align_corners=False)
    return torch.cat([pos[:1].float(), grid.permute(0, 2, 3, 1).flatten(0, 2)], dim=0).to(pos.dtype)


def _tower_from_state_dict(sd: dict, heads: Optional[int], act: str, eps: float, image_size: Optional[int],
                           copy: bool) -> CLIPVisionTower:
    """Build a `CLIPVisionTower` from OpenAI-named visual weights; the architecture is read off the shapes.

    copy=True when the tensors belong to the caller (a model or dict they keep), so the frozen teacher never
    aliases weights someone else may train; tensors we loaded or built ourselves are taken over as they are.
    """
    sd = dict(sd)
    if "conv1.weight" not in sd or "positional_embedding" not in sd:
        raise ValueError("state_dict lacks 'conv1.weight' / 'positional_embedding': not OpenAI-CLIP visual weights "
                         f"(first keys: {list(sd)[:5]}; for transformers checkpoints use from_transformers)")
    conv = sd["conv1.weight"]
    if conv.ndim == 5:  # the official teacher's Conv3d (W, 3, t, p, p); with t = 1 it is the 2-D conv per frame
        if conv.shape[2] != 1:
            raise ValueError(f"conv1.weight has temporal kernel {conv.shape[2]}; only 1 (frame-wise CLIP) is supported")
        sd["conv1.weight"] = conv = conv[:, :, 0]
    width, patch_size = conv.shape[0], conv.shape[-1]
    layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.resblocks."))
    grid = math.isqrt(sd["positional_embedding"].shape[0] - 1)
    image_size = image_size or grid * patch_size
    if heads is None:  # OpenAI CLIP ViTs all use 64-wide heads
        if width % 64:
            raise ValueError(f"num_heads=None cannot be inferred for width {width} (not a multiple of 64); pass it")
        heads = width // 64
    with torch.device("meta"):  # no random init of weights about to be overwritten (seconds at ViT-L size)
        tower = CLIPVisionTower(width, layers, heads, patch_size, image_size,
                                output_dim=sd["proj"].shape[1] if "proj" in sd else None,
                                mlp_dim=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0], act=act, eps=eps)
    sd["positional_embedding"] = resize_positional_embedding(sd["positional_embedding"], tower.grid_size)
    # float32 (checkpoints may hold fp16) and contiguous (transformers' proj arrives transposed).
    sd = {k: v.detach().to(torch.float32, memory_format=torch.contiguous_format, copy=copy) for k, v in sd.items()}
    missing, unexpected = tower.load_state_dict(sd, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"state_dict does not match a CLIP ViT (width {width}, {layers} layers): "
                         f"missing {missing[:8]}, unexpected {unexpected[:8]}")
    return tower


def _read_checkpoint(path: Union[str, os.PathLike]) -> dict:
    """Load a .safetensors / .pt / .pth / .bin file (tensors only: weights_only=True) on the CPU."""
    if str(path).endswith(".safetensors"):
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def _visual_keys(sd: dict) -> dict:
    """Unwrap {'model'|'state_dict'|'module': ...} and keep the CLIP-visual keys, prefix stripped.

    The prefix is whatever precedes `class_embedding` ('' for extracted files, 'visual.' for a full OpenAI or
    open_clip checkpoint, 'clip_teacher.' for a Stage-2 UMT checkpoint, 'module.' under DDP).
    """
    for wrapper in ("model", "state_dict", "module"):
        if isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    prefixes = {k[: -len("class_embedding")] for k in sd if k.endswith("class_embedding")}
    if len(prefixes) != 1:
        raise ValueError("state_dict must hold exactly one CLIP visual encoder; found class_embedding under "
                         f"{sorted(prefixes) or 'no key'}")
    prefix = prefixes.pop()
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


# ----------------------------------------------------------------------------------------------------------
# The teacher


class UMTTeacher(ImageTeacher):
    """Frozen CLIP image teacher for UMT distillation (Stage 1 and the Stage-2 UTA loss), on the fast CLIP tower.

    Args:
        vision: the image tower (build it with a `from_*` constructor rather than by hand).
        num_return_layers: K, how many final blocks to return (6 in every official recipe).
        return_interval: stride between returned blocks: indices are [L - 1 - int(i * interval) for i < K],
            sorted ascending, e.g. [6..11] for B/16 and [18..23] for L/14.
        normalize: L2-normalise the returned features (the official Stage-1 teacher does; Stage 2 leaves it
            to the loss).
        autocast_dtype: None (float32, exact), torch.bfloat16 or torch.float16 to run the blocks under
            `torch.autocast` on the input's device (the official recipe uses fp16 on GPU). Outputs are float32.
            The weights are then stored in that dtype (LayerNorm weights stay float32), as autocast would cast
            them on every forward anyway (frozen weights are not in autocast's cast cache): the same targets,
            without the per-forward weight copies and with half the teacher's weight memory. The given
            `vision` tower is cast in place.
        attn_implementation: "sdpa" (default) or "umt_cpu_bf16" (`modeling_umt.attention`: chunked bf16 GEMMs for
            bf16 CPU tensors, SDPA otherwise).

    Input `pixel_values` (B, T, 3, H, W) is the student's tensor, ImageNet-normalised as in the official
    pipeline (no CLIP renormalisation). Frames are resized bicubically to the teacher's `image_size` when needed.
    The class token is the one prefix token: `cls_attention` holds the class -> patch entries only.
    """

    def __init__(self, vision: CLIPVisionTower, num_return_layers: int = 6, return_interval: float = 1,
                 normalize: bool = False, autocast_dtype: Optional[torch.dtype] = None,
                 attn_implementation: str = "sdpa"):
        super().__init__(depth=vision.layers, image_size=vision.image_size, num_patches=vision.grid_size ** 2,
                         output_dim=vision.output_dim, num_prefix_tokens=1, num_return_layers=num_return_layers,
                         return_interval=return_interval, normalize=normalize, autocast_dtype=autocast_dtype)
        if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation={attn_implementation!r}; expected one of "
                             f"{ATTENTION_IMPLEMENTATIONS}")
        self.vision = vision
        self.attn_implementation = attn_implementation
        for block in vision.transformer["resblocks"]:
            block.attn.attn_implementation = attn_implementation
        if autocast_dtype is not None:
            self.store_weights_in(autocast_dtype)
        self.freeze()

    def store_weights_in(self, dtype: torch.dtype) -> None:
        """Cast every weight except the LayerNorms' (which keep float32 statistics) to `dtype`."""
        norms = {id(p) for m in self.vision.modules() if isinstance(m, LayerNormFp32) for p in m.parameters()}
        for p in self.vision.parameters():
            if id(p) not in norms:
                p.data = p.data.to(dtype)

    @property
    def input_dtype(self) -> torch.dtype:
        # Under autocast the frames stay float32 for the bicubic resize; autocast casts them at the patch embedding.
        return torch.float32 if self.autocast_dtype is not None else self.vision.conv1.weight.dtype

    def forward_frames(self, frames: torch.Tensor,
                       return_cls_attention: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """frames (N, 3, S, S) -> features (K, N, HW, D_out) float32, cls attention (N, HW) float32 or None."""
        features, cls_attention = self.vision(frames, self.return_index, return_cls_attention)
        if cls_attention is not None:
            cls_attention = cls_attention[:, self.num_prefix_tokens:]  # drop the class token's own entry
        return features, cls_attention

    # ------------------------------------------------------------------------------------------------------
    # Constructors

    @classmethod
    def from_preset(cls, name: str, pretrained: Optional[str] = None, random_init: bool = False,
                    **kwargs) -> "UMTTeacher":
        """The official UMT teachers: "clip_b16" (ViT-B/16 @ 224, D_out 512) or "clip_l14" (ViT-L/14 @ 196, D_out 768).

        `pretrained` is an open_clip tag ("openai") or a local checkpoint (an official extracted file, a full
        OpenAI/open_clip CLIP checkpoint, or a Stage-2 UMT checkpoint). `random_init=True` builds random
        weights instead (tests). Other kwargs go to `UMTTeacher` (num_return_layers, normalize, autocast_dtype).
        """
        if name not in TEACHER_PRESETS:
            raise ValueError(f"name={name!r} is not a teacher preset; expected one of {list(TEACHER_PRESETS)}")
        preset = TEACHER_PRESETS[name]
        if pretrained is not None and os.path.isfile(pretrained):
            sd = _visual_keys(_read_checkpoint(pretrained))
            shape = tuple(sd["conv1.weight"].shape) if "conv1.weight" in sd else None
            if shape is None or (shape[0], shape[-1]) != (preset["width"], preset["patch_size"]):
                raise ValueError(f"pretrained={pretrained!r} holds conv1.weight of shape {shape}; preset {name!r} "
                                 f"expects width {preset['width']}, patch {preset['patch_size']}")
            return cls(_tower_from_state_dict(sd, None, "quick_gelu", 1e-5, preset["image_size"], copy=False), **kwargs)
        return cls.from_open_clip(preset["open_clip_name"], pretrained=pretrained, random_init=random_init,
                                  image_size=preset["image_size"], **kwargs)

    @classmethod
    def from_open_clip(cls, model_name: Union[str, nn.Module] = "ViT-B-16", pretrained: Optional[str] = None,
                       random_init: bool = False, image_size: Optional[int] = None, quick_gelu: Optional[bool] = None,
                       cache_dir: Optional[str] = None, **kwargs) -> "UMTTeacher":
        """Teacher from open_clip: a built-in model name plus weights, or an open_clip model already in hand.

        Args:
            model_name: open_clip name ("ViT-B-16", "ViT-L-14-quickgelu", ...), or an open_clip `CLIP` / its
                `.visual` (`VisionTransformer`), used with whatever weights it holds.
            pretrained: an open_clip tag ("openai", "laion2b_s34b_b88k", ...; downloads) or a local full-CLIP
                checkpoint file that open_clip can load. Required unless `random_init=True`.
            random_init: build random weights; must be asked for explicitly (tests, benchmarks).
            image_size: teacher input resolution (default: the model's); positions are resized bicubically.
            quick_gelu: force QuickGELU. None follows the tag (OpenAI weights need it) or the model name.
            kwargs: passed to `UMTTeacher` (num_return_layers, return_interval, normalize, autocast_dtype).
        """
        import open_clip  # about 5 s to import (timm and more): only the open_clip constructor pays for it
        from open_clip.transformer import QuickGELU as OpenCLIPQuickGELU
        from open_clip.transformer import VisionTransformer

        if isinstance(model_name, nn.Module):
            if pretrained is not None or random_init:
                raise ValueError(f"pretrained={pretrained!r}, random_init={random_init} cannot apply to a model "
                                 "passed as model_name: its own weights are used")
            visual = getattr(model_name, "visual", model_name)
        else:
            if (pretrained is None) == (not random_init):
                raise ValueError(f"pretrained={pretrained!r}, random_init={random_init}: give exactly one of "
                                 "pretrained weights (an open_clip tag or a checkpoint path) or random_init=True")
            if quick_gelu is None and pretrained is not None:
                # open_clip only warns when OpenAI (QuickGELU) weights meet a GELU config; force the right one.
                quick_gelu = bool(open_clip.get_pretrained_cfg(model_name, pretrained).get("quick_gelu", False))
            visual = open_clip.create_model(model_name, pretrained=pretrained, force_quick_gelu=bool(quick_gelu),
                                            cache_dir=cache_dir, require_pretrained=pretrained is not None).visual
        if not isinstance(visual, VisionTransformer):
            raise ValueError(f"model_name must give an open_clip ViT image tower; got {type(visual).__name__}")
        block = visual.transformer.resblocks[0]
        if isinstance(block.mlp.gelu, OpenCLIPQuickGELU):
            act = "quick_gelu"
        elif isinstance(block.mlp.gelu, nn.GELU) and block.mlp.gelu.approximate == "none":
            act = "gelu"
        else:
            raise ValueError(f"model_name uses activation {block.mlp.gelu}; only QuickGELU and exact GELU are "
                             "supported")
        tower = _tower_from_state_dict(visual.state_dict(), block.attn.num_heads, act, block.ln_1.eps, image_size,
                                       copy=isinstance(model_name, nn.Module))
        return cls(tower, **kwargs)

    @classmethod
    def from_transformers(cls, model: Union[str, os.PathLike, nn.Module, "CLIPVisionConfig"],  # noqa: F821
                          image_size: Optional[int] = None, **kwargs) -> "UMTTeacher":
        """Teacher from transformers' CLIP: a hub id or local directory, a model, or a `CLIPVisionConfig`.

        A path or hub id loads `CLIPVisionModelWithProjection` (a full `CLIPModel` checkpoint works too), or
        `CLIPVisionModel` when the checkpoint was saved from one (it has no projection to load). A
        `CLIPVisionConfig` builds random weights (tests). Models accepted: `CLIPVisionModelWithProjection`,
        `CLIPModel`, or `CLIPVisionModel`; the last has no projection, so D_out is the hidden size.
        `image_size`: teacher input resolution; positions are resized bicubically. Default: the model's.
        kwargs go to `UMTTeacher`. Under DeepSpeed ZeRO-3, call this before `TrainingArguments` is created:
        afterwards transformers loads every model partitioned.
        """
        owned = not isinstance(model, nn.Module)
        if isinstance(model, CLIPVisionConfig):
            model = CLIPVisionModelWithProjection(model)
        elif isinstance(model, (str, os.PathLike)):
            config = AutoConfig.from_pretrained(model)
            vision_config = getattr(config, "vision_config", config)
            if config.architectures == ["CLIPVisionModel"]:  # no projection saved: do not invent a random one
                model = CLIPVisionModel.from_pretrained(model, config=vision_config)
            else:
                # A full CLIPModel checkpoint keeps projection_dim on the outer config, not on vision_config.
                vision_config.projection_dim = getattr(config, "projection_dim", vision_config.projection_dim)
                model = CLIPVisionModelWithProjection.from_pretrained(model, config=vision_config)
        elif not isinstance(model, nn.Module):
            raise ValueError("model must be a hub id, a directory, a CLIP model or a CLIPVisionConfig; "
                             f"got {type(model).__name__}")
        check_not_partitioned(model)
        vision = getattr(model, "vision_model", model)
        projection = getattr(model, "visual_projection", None)
        cfg = vision.config
        if cfg.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act={cfg.hidden_act!r} is not supported; expected one of {_ACTIVATIONS}")
        emb = vision.embeddings
        if emb.patch_embedding.bias is not None:
            raise ValueError("model has a patch-embedding bias, which OpenAI CLIP towers do not have")
        sd = {"conv1.weight": emb.patch_embedding.weight, "class_embedding": emb.class_embedding,
              "positional_embedding": emb.position_embedding.weight,
              "ln_pre.weight": vision.pre_layrnorm.weight, "ln_pre.bias": vision.pre_layrnorm.bias,
              "ln_post.weight": vision.post_layernorm.weight, "ln_post.bias": vision.post_layernorm.bias}
        if projection is not None:
            sd["proj"] = projection.weight.t()  # Linear(D, D_out) stores (D_out, D); CLIP's proj is (D, D_out)
        for i, layer in enumerate(vision.encoder.layers):
            a, p = layer.self_attn, f"transformer.resblocks.{i}."
            sd[p + "attn.in_proj_weight"] = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
            sd[p + "attn.in_proj_bias"] = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
            pairs = (("attn.out_proj", a.out_proj), ("ln_1", layer.layer_norm1), ("ln_2", layer.layer_norm2),
                     ("mlp.c_fc", layer.mlp.fc1), ("mlp.c_proj", layer.mlp.fc2))
            for ours, theirs in pairs:
                sd[p + ours + ".weight"], sd[p + ours + ".bias"] = theirs.weight, theirs.bias
        tower = _tower_from_state_dict(sd, cfg.num_attention_heads, cfg.hidden_act, cfg.layer_norm_eps, image_size,
                                       copy=not owned)
        return cls(tower, **kwargs)

    @classmethod
    def from_official_state_dict(cls, state_dict: Union[dict, str, os.PathLike], image_size: Optional[int] = None,
                                 num_heads: Optional[int] = None, act: str = "quick_gelu", eps: float = 1e-5,
                                 **kwargs) -> "UMTTeacher":
        """Teacher from OpenAI-layout visual weights: the official `vit_b16.pth` / `vit_l14.pth` files.

        Also accepts Stage-2 UMT checkpoints (`clip_teacher.*` keys, other keys ignored), full OpenAI/open_clip
        CLIP state dicts (`visual.*`), dicts wrapped in 'model'/'state_dict'/'module', or a path to any of them.
        conv1 may be the official Conv3d weight (W, 3, 1, p, p).

        Args:
            image_size: teacher input resolution, e.g. 196 for L/14 in UMT; positions are resized bicubically
                (class row kept) when it differs from the checkpoint's. Default: the checkpoint's resolution.
            num_heads: attention heads; default width // 64, true of every OpenAI CLIP ViT.
            act, eps: activation ("quick_gelu" for OpenAI weights) and LayerNorm epsilon.
            kwargs: passed to `UMTTeacher` (num_return_layers, return_interval, normalize, autocast_dtype).
        """
        owned = isinstance(state_dict, (str, os.PathLike))
        if owned:
            state_dict = _read_checkpoint(state_dict)
        if not isinstance(state_dict, dict):
            raise ValueError(f"state_dict must be a dict or a checkpoint path; got {type(state_dict).__name__}")
        tower = _tower_from_state_dict(_visual_keys(state_dict), num_heads, act, eps, image_size, copy=not owned)
        return cls(tower, **kwargs)
