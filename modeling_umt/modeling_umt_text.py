"""The text side of UMT Stage 2: BERT split at `fusion_layer` (official `xbert`), from transformers' BERT pieces.

Layers [0, fusion_layer) are plain `BertLayer`s (the text encoder); from `fusion_layer` on, `UMTFusionLayer`s add
cross-attention to the video tokens (the fusion encoder). Parameter names are BERT's, so any BERT checkpoint loads.

Shapes: B batch, L text length, H text width, N video tokens, Dv video width.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.bert.modeling_bert import (
    BertAttention,
    BertEmbeddings,
    BertIntermediate,
    BertLayer,
    BertOutput,
    BertPreTrainedModel,
)

TEXT_MODES = ("text", "fusion", "multi_modal")


class UMTFusionLayer(GradientCheckpointingLayer):
    """A BERT layer with cross-attention to the video tokens: self-attention -> cross-attention -> feed-forward,
    each with BERT's residual + post-LayerNorm. Cross-attention queries come from the text (H -> H); keys and values
    from the video tokens (Dv -> H), freshly initialised. (B, L, H), (B, N, Dv) -> (B, L, H).

    Built from transformers' `BertAttention` / `BertIntermediate` / `BertOutput`, so the parameter names are BERT's
    (`attention.*`, `crossattention.*`, `intermediate.*`, `output.*`) and those of the official `xbert` checkpoints.
    """

    def __init__(self, config: BertConfig, encoder_width: int, layer_idx: int | None = None):
        super().__init__()
        self.attention = BertAttention(config, is_causal=False, layer_idx=layer_idx)
        self.crossattention = BertAttention(config, is_causal=False, layer_idx=layer_idx, is_cross_attention=True)
        heads = self.crossattention.self.all_head_size
        # BERT's cross-attention reads keys/values of the text width; UMT's read the video width.
        self.crossattention.self.key = nn.Linear(encoder_width, heads)
        self.crossattention.self.value = nn.Linear(encoder_width, heads)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if encoder_hidden_states is None:
            raise ValueError("`encoder_hidden_states` (the video tokens) is required by the fusion layers.")
        hidden, _ = self.attention(hidden_states, attention_mask, **kwargs)
        hidden, _ = self.crossattention(hidden, None, encoder_hidden_states, encoder_attention_mask, **kwargs)
        return self.output(self.intermediate(hidden), hidden)


class UMTTextEncoder(nn.Module):
    """The BERT layer stack: `BertLayer` below `fusion_layer`, `UMTFusionLayer` from it on."""

    def __init__(self, config: BertConfig, fusion_layer: int, encoder_width: int):
        super().__init__()
        self.fusion_layer = fusion_layer
        self.layer = nn.ModuleList(
            [
                BertLayer(config, layer_idx=i) if i < fusion_layer else UMTFusionLayer(config, encoder_width, i)
                for i in range(config.num_hidden_layers)
            ]
        )


class UMTTextModel(BertPreTrainedModel):
    """BERT split at `fusion_layer` (official `xbert` with its three modes).

    `mode="text"` runs the embeddings and layers [0, fusion_layer) on `input_ids`; `mode="fusion"` runs layers
    [fusion_layer, L) on already-encoded text `hidden_states` with cross-attention to `encoder_hidden_states`;
    `mode="multi_modal"` runs everything. Parameter names are BERT's (`embeddings.*`, `encoder.layer.{i}.*`).
    """

    _no_split_modules = ["BertEmbeddings", "BertLayer", "UMTFusionLayer"]

    def __init__(self, config: BertConfig, fusion_layer: int, encoder_width: int):
        super().__init__(config)
        self.fusion_layer = fusion_layer
        self.embeddings = BertEmbeddings(config)
        self.encoder = UMTTextEncoder(config, fusion_layer, encoder_width)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        hidden_states: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        mode: str = "text",
        **kwargs,
    ) -> BaseModelOutput:
        """
        input_ids: (B, L) token ids ("text", "multi_modal"). hidden_states: (B, L, H) text already through the
        text-only layers ("fusion"). attention_mask: (B, L) 1 = token, 0 = padding. encoder_hidden_states:
        (B, N, Dv) video tokens (fusion layers). encoder_attention_mask: (B, N) or None (= all visible).
        Returns last_hidden_state (B, L, H).
        """
        if mode not in TEXT_MODES:
            raise ValueError(f"`mode` must be one of {TEXT_MODES}, got {mode!r}.")
        if mode == "fusion":
            if hidden_states is None:
                raise ValueError("`hidden_states` (text after the text-only layers) is required with mode='fusion'.")
            start, stop = self.fusion_layer, self.config.num_hidden_layers
        else:
            if input_ids is None:
                raise ValueError(f"`input_ids` is required with mode={mode!r}.")
            hidden_states = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids)
            start = 0
            stop = self.fusion_layer if mode == "text" else self.config.num_hidden_layers
        mask = create_bidirectional_mask(self.config, hidden_states, attention_mask)
        cross_mask = None
        if stop > self.fusion_layer:
            if encoder_hidden_states is None:
                raise ValueError(f"`encoder_hidden_states` (video tokens) is required with mode={mode!r}.")
            if encoder_attention_mask is not None:
                cross_mask = create_bidirectional_mask(
                    self.config, hidden_states, encoder_attention_mask, encoder_hidden_states=encoder_hidden_states
                )
        for layer in self.encoder.layer[start:stop]:
            if isinstance(layer, UMTFusionLayer):
                hidden_states = layer(hidden_states, mask, encoder_hidden_states, cross_mask, **kwargs)
            else:
                hidden_states = layer(hidden_states, mask, **kwargs)
        return BaseModelOutput(last_hidden_state=hidden_states)


__all__ = ["TEXT_MODES", "UMTFusionLayer", "UMTTextEncoder", "UMTTextModel"]
