# Copyright 2026 The UMT-for-Transformers authors. Licensed under the Apache License, Version 2.0.
"""PyTorch UMT: the Unmasked Teacher video ViT as a transformers v5 model.

The student of Li et al. (ICCV 2023) is a plain ViT over video tokens: a Conv3d patch embedding with tubelet 1,
no class token, a fixed 1-D sin-cos table over the flattened (t, h, w) index, pre-norm blocks with joint space-time
attention (q and v biases, no k bias), exact GELU and LayerNorm eps 1e-6. UMT drops masked tokens before the blocks
(it never inserts mask tokens), which is what makes Stage-1 distillation cheap.

Shapes: B batch, T frames, C channels, H x W pixels, N = T' * H' * W' tokens, D hidden size.
"""

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from transformers.utils import logging

from .attention import CPU_BF16_ATTENTION  # noqa: F401  (importing it registers that attention implementation)
from .alignment import UMTAlignmentHeads
from .configuration_umt import UMTConfig
from .inputs import check_pixel_values, check_token_mask
from .masking import gather_visible
from .positions import build_position_embeddings
from .storage import AlignedLoadingMixin

logger = logging.get_logger(__name__)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample: zero whole residual branches with probability p, rescale the rest."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class UMTDropPath(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# ----------------------------------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------------------------------
class UMTPatchEmbeddings(nn.Module):
    """Conv3d patch embedding: (B, T, C, H, W) -> (B, N, D), tokens ordered t, then h, then w."""

    def __init__(self, config: UMTConfig):
        super().__init__()
        ph, pw = config.patch_hw
        self.num_channels = config.num_channels
        self.projection = nn.Conv3d(
            config.num_channels,
            config.hidden_size,
            kernel_size=(config.tubelet_size, ph, pw),
            stride=(config.tubelet_size, ph, pw),
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = pixel_values.permute(0, 2, 1, 3, 4)  # (B, C, T, H, W) for Conv3d
        # contiguous once here: a transposed token stream would make every LayerNorm and residual add copy
        return self.projection(x.to(self.projection.weight.dtype)).flatten(2).transpose(1, 2).contiguous()


class UMTEmbeddings(nn.Module):
    """Patch embedding + fixed sin-cos positions, then drop masked tokens.

    The position table is a non-persistent buffer: it is never trained and never stored in checkpoints
    (as in the official code), and it is rebuilt for other layouts with `interpolate_pos_encoding=True`.
    """

    def __init__(self, config: UMTConfig):
        super().__init__()
        self.config = config
        self.patch_embeddings = UMTPatchEmbeddings(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.register_buffer("position_embeddings", self.compute_position_embeddings(config.grid_size), persistent=False)

    def compute_position_embeddings(self, grid: tuple[int, int, int]) -> torch.Tensor:
        """The (1, T'*H'*W', D) table for a token grid (T', H', W'), by the config's rule."""
        c = self.config
        return build_position_embeddings(
            grid[0],
            grid[1:],
            c.hidden_size,
            rule=c.position_embedding_type,
            reference_frames=c.pos_embed_reference_frames // c.tubelet_size,
            reference_grid=c.reference_grid,
        )

    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> torch.Tensor:
        if pixel_values.ndim != 5 or pixel_values.shape[2] != self.config.num_channels:
            raise ValueError(
                f"`pixel_values` must have shape (batch, frames, {self.config.num_channels}, height, width), got "
                f"{tuple(pixel_values.shape)}."
            )
        _, t, _, h, w = pixel_values.shape
        (ph, pw), tub = self.config.patch_hw, self.config.tubelet_size
        if t % tub or h % ph or w % pw:
            raise ValueError(
                f"`pixel_values` frames/height/width {(t, h, w)} must be multiples of tubelet/patch {(tub, ph, pw)}."
            )
        grid = (t // tub, h // ph, w // pw)
        if grid == self.config.grid_size:
            pos = self.position_embeddings
        elif interpolate_pos_encoding:
            pos = self.compute_position_embeddings(grid).to(self.position_embeddings.device)
        else:
            raise ValueError(
                f"`pixel_values` has {t} frames of {h}x{w} but the model was built for {self.config.num_frames} frames "
                f"of {self.config.image_hw[0]}x{self.config.image_hw[1]}; pass `interpolate_pos_encoding=True` to "
                f"resize the position embeddings."
            )
        x = self.patch_embeddings(pixel_values)
        x = x + pos.to(x.dtype)
        if bool_masked_pos is not None:
            x = gather_visible(x, bool_masked_pos, name="bool_masked_pos")
        return self.dropout(x)


# ----------------------------------------------------------------------------------------------------------------
# Transformer blocks
# ----------------------------------------------------------------------------------------------------------------
def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention. q, k, v: (B, heads, N, d) -> output (B, N, heads, d), weights (B, heads, N, N)."""
    weights = torch.matmul(query * scaling, key.transpose(-1, -2))
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = weights.softmax(dim=-1)
    weights = F.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class UMTSelfAttention(nn.Module):
    """Multi-head self-attention with q and v biases and no k bias (official BEiT-style `q_bias`/`v_bias`).

    The kernel comes from transformers' attention interface (`config._attn_implementation`: sdpa by default, eager,
    umt_cpu_bf16 (modeling_umt.attention), flash_attention_2 where installed); with attention weights requested the
    eager kernel runs that call, since fused kernels do not return them.
    """

    def __init__(self, config: UMTConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.dropout_prob = config.attention_probs_dropout_prob
        self.is_causal = False
        self.query = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.key = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.value = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.proj_dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, _ = hidden_states.shape
        shape = (b, n, self.num_heads, self.head_dim)
        q = self.query(hidden_states).view(shape).transpose(1, 2)
        k = self.key(hidden_states).view(shape).transpose(1, 2)
        v = self.value(hidden_states).view(shape).transpose(1, 2)
        impl = self.config._attn_implementation
        if output_attentions or impl in (None, "eager"):
            attention: Callable = eager_attention_forward
        else:
            attention = ALL_ATTENTION_FUNCTIONS.get_interface(impl, eager_attention_forward)
        out, weights = attention(
            self,
            q,
            k,
            v,
            None,
            scaling=self.scaling,
            dropout=self.dropout_prob if self.training else 0.0,
            is_causal=False,
        )
        out = self.proj_dropout(self.proj(out.reshape(b, n, -1)))
        return out, weights


class _GeluLinearRecompute(torch.autograd.Function):
    """fc2(gelu(h)) that keeps only `h` for backward and recomputes gelu(h) there.

    Plain autograd keeps both h (for GELU's derivative) and gelu(h) (for fc2's weight gradient): two (N, 4D) tensors
    per block. Recomputing the elementwise GELU costs a few percent of the MLP's time and frees one of them, the
    largest activation of a training step after attention. Results are identical to the plain path."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.gelu(h), weight.to(h.dtype), None if bias is None else bias.to(h.dtype))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        h, weight = ctx.saved_tensors
        grad_out = grad_out.to(h.dtype)
        act = F.gelu(h)
        grad_weight = grad_out.reshape(-1, grad_out.shape[-1]).T @ act.reshape(-1, act.shape[-1])
        grad_bias = grad_out.reshape(-1, grad_out.shape[-1]).sum(0).to(weight.dtype) if ctx.has_bias else None
        grad_act = grad_out @ weight.to(h.dtype)
        grad_h = torch.ops.aten.gelu_backward(grad_act, h, approximate="none")
        return grad_h, grad_weight.to(weight.dtype), grad_bias


class UMTMLP(nn.Module):
    """fc1 -> GELU -> fc2 -> dropout. While training with exact GELU, the activation is recomputed in backward instead
    of stored (`recompute_activation`, on by default): same numbers, less memory per token."""

    recompute_activation: bool = True

    def __init__(self, config: UMTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.exact_gelu = config.hidden_act == "gelu"
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.recompute_activation and self.exact_gelu and torch.is_grad_enabled() and h.requires_grad:
            if torch.is_autocast_enabled(h.device.type):
                h = h.to(torch.get_autocast_dtype(h.device.type))
            with torch.autocast(h.device.type, enabled=False):
                out = _GeluLinearRecompute.apply(h, self.fc2.weight, self.fc2.bias)
        else:
            out = self.fc2(self.act(h))
        return self.dropout(out)


class UMTLayer(GradientCheckpointingLayer):
    """Pre-norm block: x + drop_path(attn(norm1(x))), then x + drop_path(mlp(norm2(x))). (B, N, D) -> (B, N, D)."""

    def __init__(self, config: UMTConfig, drop_path_rate: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = UMTSelfAttention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = UMTMLP(config)
        self.drop_path = UMTDropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, hidden_states: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> torch.Tensor:
        attn, _ = self.attention(self.norm1(hidden_states), **kwargs)
        hidden_states = hidden_states + self.drop_path(attn)
        return hidden_states + self.drop_path(self.mlp(self.norm2(hidden_states)))


class UMTEncoder(nn.Module):
    def __init__(self, config: UMTConfig):
        super().__init__()
        # device="cpu": plain floats even when the model is built under a `torch.device("meta")` context
        rates = torch.linspace(0, config.drop_path_rate, config.num_hidden_layers, device="cpu").tolist()
        self.layer = nn.ModuleList([UMTLayer(config, rates[i]) for i in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def forward(
        self, hidden_states: torch.Tensor, collect_layers: tuple[int, ...] = (), **kwargs
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run all blocks on (B, N, D); also return the outputs of the blocks in `collect_layers` (ascending)."""
        collected = []
        for i, layer in enumerate(self.layer):
            hidden_states = layer(hidden_states, **kwargs)
            if i in collect_layers:
                collected.append(hidden_states)
        return hidden_states, collected


class UMTPooler(nn.Module):
    """Mean over tokens (or per frame, `pooling="temporal_mean"`), then LayerNorm: the official `fc_norm`/`pool_norm`."""

    def __init__(self, config: UMTConfig):
        super().__init__()
        self.pooling = config.pooling
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """(B, N, D) -> (B, D), or (B, T', D) for temporal pooling when `num_frames` (T') is given."""
        if self.pooling == "temporal_mean" and num_frames:
            b, n, d = hidden_states.shape
            return self.norm(hidden_states.view(b, num_frames, n // num_frames, d).mean(2))
        return self.norm(hidden_states.mean(1))


# ----------------------------------------------------------------------------------------------------------------
# Pre-trained model base
# ----------------------------------------------------------------------------------------------------------------
class UMTClassificationHead(nn.Linear):
    """The classification Linear; its own class so its init (truncated normal x `head_init_scale`) is found by type."""


class UMTPreTrainedModel(AlignedLoadingMixin, PreTrainedModel):
    config: UMTConfig
    config_class = UMTConfig
    base_model_prefix = "umt"
    main_input_name = "pixel_values"
    input_modalities = "video"
    supports_gradient_checkpointing = True
    _no_split_modules = ["UMTEmbeddings", "UMTLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": UMTLayer, "attentions": UMTSelfAttention}

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, UMTClassificationHead):
            weight = torch.empty_like(module.weight, device="cpu" if module.weight.is_meta else module.weight.device)
            nn.init.trunc_normal_(weight, std=std)
            init.copy_(module.weight, weight * self.config.head_init_scale)
            init.zeros_(module.bias)
        elif isinstance(module, (nn.Linear, nn.Conv3d)):
            if self.config.initializer_type == "xavier_uniform" and isinstance(module, nn.Linear):
                init.xavier_uniform_(module.weight)
            else:
                init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, UMTEmbeddings):
            init.copy_(module.position_embeddings, module.compute_position_embeddings(self.config.grid_size))
        elif isinstance(module, UMTAlignmentHeads):
            init.copy_(module.position_embeddings, module.compute_position_embeddings(self.config.num_patches))

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, with every UMT head in the config's `auto_map`, so a saved directory
        loads through any Auto class with `trust_remote_code=True` (the Hub's custom-code route), not only the
        one matching the saved class."""
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.setdefault("AutoConfig", "configuration_umt.UMTConfig")
        for auto_class, name in (
            ("AutoModel", "UMTVideoModel"),
            ("AutoModelForVideoClassification", "UMTForVideoClassification"),
            ("AutoModelForPreTraining", "UMTForPreTraining"),
        ):
            auto_map.setdefault(auto_class, f"modeling_umt.{name}")
        self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    def no_weight_decay(self) -> set[str]:
        """Names excluded from weight decay beyond the biases/norms/1-D rule (the sin-cos table is not a parameter)."""
        return set()


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class UMTIntermediatesOutput(BaseModelOutputWithPooling):
    """`UMTVideoModel.forward_intermediates` output.

    last_hidden_state: (B, N_vis, D) final tokens (after the final LayerNorm when the model has one).
    pooler_output: as `UMTVideoModel.forward` (None without a pooler).
    intermediates: (K, B, N_vis, D) outputs of the chosen blocks, ascending (None when none were asked for).
    bool_masked_pos: (B, N) bool on the tokens' device, True = dropped (None without a mask).
    """

    intermediates: torch.Tensor | None = None
    bool_masked_pos: torch.Tensor | None = None


class UMTVideoModel(UMTPreTrainedModel):
    """The bare UMT video encoder.

    Input `pixel_values` (B, T, C, H, W), ImageNet-normalised. Optional `bool_masked_pos` (B, N) bool, True = token
    dropped before the blocks (every sample must drop the same number). Returns last_hidden_state (B, N_vis, D)
    (after the final LayerNorm when `config.use_final_norm`), pooler_output (B, D) — mean over tokens then
    `pooler.norm` — and, on request, hidden_states (embeddings + every block) and attentions.
    """

    # Heads of the task models are irrelevant to the bare encoder; the pooler norm is absent from Stage-1 checkpoints
    # and starts as an identity LayerNorm, so neither deserves a load warning.
    _keys_to_ignore_on_load_unexpected = [r"^uta_heads\.", r"^classifier\."]
    _keys_to_ignore_on_load_missing = [r"^pooler\."]

    def __init__(self, config: UMTConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = UMTEmbeddings(config)
        self.encoder = UMTEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.use_final_norm else None
        self.pooler = UMTPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        out = self.forward_intermediates(pixel_values, (), bool_masked_pos, interpolate_pos_encoding, **kwargs)
        return BaseModelOutputWithPooling(last_hidden_state=out.last_hidden_state, pooler_output=out.pooler_output)

    def forward_intermediates(
        self,
        pixel_values: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        norm: bool = True,
        **kwargs: Unpack[TransformersKwargs],
    ) -> "UMTIntermediatesOutput":
        """One pass that also returns the outputs of chosen blocks (in the spirit of timm's `forward_intermediates`).

        indices: block indices (negative ones count from the end), or an int n for the last n blocks, or None for
            every block; returned in ascending order.
        bool_masked_pos: (B, N) True = token dropped before the blocks (returned as bool on the tokens' device).
        norm: pass the intermediates through the final LayerNorm (when the model has one), as UTA does.
        Returns last_hidden_state (B, N_vis, D), pooler_output (as `forward`), intermediates (K, B, N_vis, D).
        The heads that need inner layers (UTA in Stages 1 and 2) call this instead of driving the blocks themselves.
        """
        layers = self._intermediate_layers(indices)
        kwargs["output_attentions"] = kwargs.get("output_attentions", self.config.output_attentions)
        check_pixel_values(pixel_values)
        if bool_masked_pos is not None:
            check_token_mask(bool_masked_pos)
            bool_masked_pos = bool_masked_pos.to(device=pixel_values.device)
        hidden = self.embeddings(pixel_values, bool_masked_pos, interpolate_pos_encoding)
        hidden, collected = self.encoder(hidden, collect_layers=layers, **kwargs)
        final_norm = self.layernorm if self.layernorm is not None else nn.Identity()
        hidden = final_norm(hidden)
        intermediates = None
        if collected:
            intermediates = torch.stack(collected)  # (K, B, N_vis, D)
            intermediates = final_norm(intermediates) if norm else intermediates
        pooled = None
        if self.pooler is not None:
            frames = None if bool_masked_pos is not None else pixel_values.shape[1] // self.config.tubelet_size
            pooled = self.pooler(hidden, frames)
        return UMTIntermediatesOutput(
            last_hidden_state=hidden, pooler_output=pooled, intermediates=intermediates, bool_masked_pos=bool_masked_pos
        )

    def _intermediate_layers(self, indices: int | Sequence[int] | None) -> tuple[int, ...]:
        """`indices` as ascending non-negative block indices (see `forward_intermediates`)."""
        depth = self.config.num_hidden_layers
        if indices is None:
            return tuple(range(depth))
        if isinstance(indices, int):
            if not 0 <= indices <= depth:
                raise ValueError(f"`indices` as a count of last blocks must be in [0, {depth}], got {indices}.")
            return tuple(range(depth - indices, depth))
        layers = sorted({i + depth if i < 0 else i for i in indices})
        if layers and (layers[0] < 0 or layers[-1] >= depth):
            raise ValueError(f"`indices` must name blocks in [-{depth}, {depth}), got {list(indices)}.")
        return tuple(layers)


class UMTForVideoClassification(UMTPreTrainedModel):
    """UMT with the official fine-tuning head: mean pool -> `pooler.norm` (fc_norm) -> dropout -> linear.

    The head's initial weights are truncated-normal scaled by `config.head_init_scale` (0.001), as the official code.
    Loss follows `config.problem_type` (single-label cross-entropy by default, multi-label BCE, or regression MSE).
    """

    def __init__(self, config: UMTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.umt = UMTVideoModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = (
            UMTClassificationHead(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        )
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ImageClassifierOutput:
        outputs = self.umt(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        pooled = outputs.pooler_output
        if pooled.ndim == 3:  # temporal pooling: average the per-frame normalised features
            pooled = pooled.mean(1)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = self.loss_function(labels, logits, self.config, **kwargs)
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class UMTFrameLevelClassifier(UMTForVideoClassification):
    """Frame-level baseline with the UMT architecture and weights: every frame is encoded on its own (no attention
    across frames), the token features of all frames are averaged, then fc_norm -> head. Frame order cannot matter.

    pixel_values (B, T, C, H, W) -> logits (B, K).
    """

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs) -> ImageClassifierOutput:
        check_pixel_values(pixel_values)
        b, t = pixel_values.shape[:2]
        frames = pixel_values.reshape(b * t, 1, *pixel_values.shape[2:])
        tokens = self.umt(frames, interpolate_pos_encoding=True).last_hidden_state  # (B*T, HW, D)
        pooled = self.umt.pooler.norm(tokens.reshape(b, -1, tokens.shape[-1]).mean(1))
        logits = self.classifier(self.dropout(pooled))
        loss = None if labels is None else F.cross_entropy(logits.float(), labels)
        return ImageClassifierOutput(loss=loss, logits=logits)


@dataclass
class UMTForPreTrainingOutput(ModelOutput):
    """Output of `UMTForPreTraining`.

    loss: scalar UTA loss (mean of `uta_loss_per_layer`), when teacher features were given.
    uta_loss_per_layer: (K,) loss of each aligned layer, ascending layer order.
    student_features: (K, B, N_vis, D_teacher) aligned-head outputs for the visible tokens.
    last_hidden_state: (B, N_vis, D) final student tokens after the final LayerNorm.
    """

    loss: torch.Tensor | None = None
    uta_loss_per_layer: torch.Tensor | None = None
    student_features: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class UMTForPreTraining(UMTPreTrainedModel):
    """The Stage-1 student: UMT encoder + K alignment heads for Unmasked Token Alignment (official §1.4).

    The outputs of the last K blocks (`config.uta_layer_indices`) go through the encoder's shared final LayerNorm,
    get a sin-cos table (over the full token layout, gathered with the mask) added, then one
    `UMTAlignmentHead` each. Given the frozen teacher's features for the same video, `forward` returns the UTA loss
    mean(2 - 2 cos) over layers, batch and visible tokens. The teacher is never part of this module, so it is never
    saved with the student, never in its optimizer and never partitioned by ZeRO-3.
    """

    def __init__(self, config: UMTConfig):
        if config.num_uta_layers < 1:
            raise ValueError(f"UMTForPreTraining aligns at least one layer: `uta_num_layers` must be >= 1, got "
                             f"{config.uta_num_layers}.")
        if not config.use_final_norm:
            logger.info("UMTForPreTraining shares the encoder's final LayerNorm across aligned layers: use_final_norm=True.")
            config = copy.deepcopy(config)  # never flip the flag on the caller's config (other models may share it)
            config.use_final_norm = True
        super().__init__(config)
        self.umt = UMTVideoModel(config, add_pooling_layer=False)
        self.uta_heads = UMTAlignmentHeads(config)
        self.post_init()

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        teacher_features: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> UMTForPreTrainingOutput:
        """
        pixel_values: (B, T, C, H, W). bool_masked_pos: (B, N) True = dropped (semantic mask from the teacher).
        teacher_features: (K, B, N, D_teacher) for all tokens, or (K, B, N_vis, D_teacher) already gathered.
        """
        out = self.umt.forward_intermediates(
            pixel_values, self.config.uta_layer_indices, bool_masked_pos, interpolate_pos_encoding, **kwargs
        )
        features = self.uta_heads(out.intermediates, out.bool_masked_pos)  # (K, B, N_vis, D_t)
        loss = per_layer = None
        if teacher_features is not None:
            per_layer = self.uta_heads.loss(features, teacher_features, out.bool_masked_pos, reduction="per_layer")
            loss = per_layer.mean()
        return UMTForPreTrainingOutput(
            loss=loss, uta_loss_per_layer=per_layer, student_features=features, last_hidden_state=out.last_hidden_state
        )


__all__ = [
    "UMTPreTrainedModel",
    "UMTForPreTraining",
    "UMTForPreTrainingOutput",
    "UMTVideoModel",
    "UMTForVideoClassification",
    "UMTFrameLevelClassifier",
    "UMTIntermediatesOutput",
]
