"""Configuration of the UMT Stage-2 video-language model (`UMTForVideoTextRetrieval`).

A composite config, in the manner of `CLIPConfig`: `vision_config` is a `UMTConfig` (the video ViT, its pool norm and
UTA heads), `text_config` is a transformers `BertConfig`. The BERT is split at `fusion_layer`: layers
[0, fusion_layer) encode text alone, layers [fusion_layer, L) add cross-attention to the video tokens
(official_umt.md §5.2: BERT-base 12 layers with fusion from 9, BERT-large 24 from 19).
"""

from __future__ import annotations

import logging

from huggingface_hub.dataclasses import strict
from transformers import BertConfig
from transformers.configuration_utils import PreTrainedConfig

from .config_validation import NON_NEGATIVE, POSITIVE, Range, ValidatedConfigMixin, check_config_fields
from .configuration_umt import UMT_PRESETS, UMTConfig

logger = logging.getLogger(__name__)

# The video encoder as the official Stage-2 code builds it (official_umt.md §5.1): final norm, per-frame pooling
# (`keep_temporal=True`), sin-cos table regenerated for any frame count, xavier init, 4 frames, and Stage-2 alignment
# heads (LayerNorm eps 1e-5, no L2 step: the UTA loss normalises).
STAGE2_VISION_DEFAULTS: dict = dict(
    num_frames=4,
    use_final_norm=True,
    pooling="temporal_mean",
    position_embedding_type="direct",
    initializer_type="xavier_uniform",
    uta_head_norm_eps=1e-5,
    uta_l2_normalize=False,
)

# Text sizes of the released models (fusion_layer, embed_dim) by vision width.
UMT_RETRIEVAL_PRESETS: dict[str, dict] = {
    "umt-b16": dict(fusion_layer=9, embed_dim=512),
    "umt-l16": dict(fusion_layer=19, embed_dim=768),
}


# Bounds of the numeric fields (types and finiteness come from the annotations; see config_validation.py).
RETRIEVAL_FIELD_RANGES = {
    "fusion_layer": NON_NEGATIVE, "embed_dim": POSITIVE, "vtc_loss_weight": NON_NEGATIVE,
    "vtm_loss_weight": NON_NEGATIVE, "mlm_loss_weight": NON_NEGATIVE, "uta_loss_weight": NON_NEGATIVE,
    "mask_token_id": NON_NEGATIVE, "cls_token_id": NON_NEGATIVE, "itm_rerank_k": POSITIVE,
    "initializer_range": NON_NEGATIVE, "temperature_min": Range(low=0, low_open=True),
}


@strict
class UMTRetrievalConfig(ValidatedConfigMixin, PreTrainedConfig):
    r"""
    Configuration of `UMTForVideoTextRetrieval`: UMT video encoder + BERT text/fusion encoder + contrastive,
    matching and masked-language-modelling heads.

    Args:
        vision_config (`UMTConfig` or dict, optional): the video encoder. Default: UMT-B/16 with the Stage-2 settings
            of `STAGE2_VISION_DEFAULTS` (final norm, `pooling="temporal_mean"`, `position_embedding_type="direct"`).
        text_config (`BertConfig` or dict, optional): the BERT (default: bert-base-uncased sizes).
        fusion_layer (`int`, defaults to 9): first BERT layer with cross-attention to the video tokens.
        embed_dim (`int`, defaults to 512): width of the contrastive space (`vision_proj`, `text_proj`).
        temperature_init (`float`, defaults to 0.07): initial VTC temperature; it divides the similarities.
        temperature_min, temperature_max (`float`, defaults to 0.001 / 0.5): the temperature is clamped into this range
            in place at every forward (official `clip_contrastive_temperature`).
        use_mlm_head (`bool`, defaults to True): build the MLM head (`BertOnlyMLMHead`, decoder tied to the word
            embeddings). Pre-training checkpoints have it; fine-tuned retrieval checkpoints do not.
        vtc_loss_weight, vtm_loss_weight, mlm_loss_weight, uta_loss_weight (`float`, default 1.0): weights of the four
            Stage-2 losses in the total (official pre-training: all 1; retrieval fine-tuning: vtc=vtm=1, mlm=uta=0).
        vtm_hard_negatives (`bool`, defaults to True): draw VTM negatives from the similarity softmax (else uniformly
            among non-positives).
        mlm_probability (`float`, defaults to 0.5): fraction of tokens masked for MLM (80% [MASK], 10% random, 10% kept).
        mask_token_id, cls_token_id (`int`, defaults to 103 / 101, the bert-base-uncased ids): the tokenizer's [MASK]
            (written by MLM) and [CLS] (never masked) ids; [PAD] is `text_config.pad_token_id`.
        itm_rerank_k (`int`, defaults to 128): retrieval re-ranks the top k candidates by the ITM head (`k_test`).
        text_pooling (`str`, defaults to `"cls"`): how a text sequence becomes one vector, for VTC (after the text-only
            layers) and for the ITM head (after the fusion layers): `"cls"` (official: the [CLS] token) or `"mean"`
            (mean over the non-padding tokens). Use "mean" for BERTs whose [CLS] carries no sentence information before
            the last layer, e.g. sentence-transformers' all-MiniLM-L6-v2 (its [CLS] at layers 0-5 is the same vector
            for every sentence, cosine > 0.9999).
        initializer_range (`float`, defaults to 0.02): std of the normal init of BERT-side and projection weights.
    """

    model_type = "umt_retrieval"
    sub_configs_defaults = {"vision_config": UMTConfig, "text_config": BertConfig}

    vision_config: dict | UMTConfig | None = None
    text_config: dict | BertConfig | None = None
    fusion_layer: int = 9
    embed_dim: int = 512
    temperature_init: float = 0.07
    temperature_min: float = 0.001
    temperature_max: float = 0.5
    use_mlm_head: bool = True
    vtc_loss_weight: float | int = 1.0
    vtm_loss_weight: float | int = 1.0
    mlm_loss_weight: float | int = 1.0
    uta_loss_weight: float | int = 1.0
    vtm_hard_negatives: bool = True
    mlm_probability: float = 0.5
    mask_token_id: int = 103
    cls_token_id: int | None = 101
    itm_rerank_k: int = 128
    text_pooling: str = "cls"
    initializer_range: float = 0.02
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        if self.vision_config is None:
            self.vision_config = UMTConfig(**STAGE2_VISION_DEFAULTS)
        super().__post_init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, text_config: BertConfig | dict | None = None, **overrides) -> "UMTRetrievalConfig":
        """A released architecture: `"umt-b16"` (BERT-base, fusion 9, embed 512) or `"umt-l16"` (BERT-large, fusion 19,
        embed 768). The vision side takes the Stage-2 defaults; keyword arguments override top-level fields."""
        if name not in UMT_RETRIEVAL_PRESETS:
            raise ValueError(f"`name` must be one of {sorted(UMT_RETRIEVAL_PRESETS)}, got {name!r}.")
        vision = UMTConfig(**{**UMT_PRESETS[name], **STAGE2_VISION_DEFAULTS})
        if text_config is None:
            large = name == "umt-l16"
            text_config = BertConfig(
                hidden_size=1024 if large else 768,
                num_hidden_layers=24 if large else 12,
                num_attention_heads=16 if large else 12,
                intermediate_size=4096 if large else 3072,
            )
        return cls(vision_config=vision, text_config=text_config, **{**UMT_RETRIEVAL_PRESETS[name], **overrides})

    def validate_architecture(self):
        """Part of `@strict` validation: each message names the field, its value and what is expected."""
        check_config_fields(self, RETRIEVAL_FIELD_RANGES)
        if not isinstance(self.vision_config, UMTConfig):
            raise TypeError(f"`vision_config` must be a UMTConfig or a dict, got {type(self.vision_config).__name__}.")
        if not isinstance(self.text_config, BertConfig):
            raise TypeError(f"`text_config` must be a BertConfig or a dict, got {type(self.text_config).__name__}.")
        layers = self.text_config.num_hidden_layers
        if not 0 <= self.fusion_layer <= layers:
            raise ValueError(
                f"`fusion_layer` ({self.fusion_layer}) must be between 0 and `text_config.num_hidden_layers` ({layers})."
            )
        if self.embed_dim < 1:
            raise ValueError(f"`embed_dim` must be positive, got {self.embed_dim}.")
        if not 0 < self.temperature_min <= self.temperature_init <= self.temperature_max:
            raise ValueError(
                f"`temperature_init` ({self.temperature_init}) must lie in [`temperature_min`, `temperature_max`] = "
                f"[{self.temperature_min}, {self.temperature_max}] with temperature_min > 0."
            )
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"`mlm_probability` must be in (0, 1), got {self.mlm_probability}.")
        if self.text_pooling not in ("cls", "mean"):
            raise ValueError(f"`text_pooling` must be 'cls' or 'mean', got {self.text_pooling!r}.")
        if self.itm_rerank_k < 1:
            raise ValueError(f"`itm_rerank_k` must be >= 1, got {self.itm_rerank_k}.")
        for name in ("vtc_loss_weight", "vtm_loss_weight", "mlm_loss_weight", "uta_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")
        vocab = self.text_config.vocab_size
        for name in ("mask_token_id", "cls_token_id"):
            value = getattr(self, name)
            if value is not None and value >= vocab:  # a warning: a BERT is often given before its tokenizer's ids
                logger.warning("`%s` (%d) is not a token id below `text_config.vocab_size` (%d): set it to the "
                               "tokenizer's id before MLM (which refuses it).", name, value, vocab)
        if self.text_config.is_decoder or self.text_config.add_cross_attention:
            raise ValueError(
                "`text_config` must be a plain BERT encoder (is_decoder=False, add_cross_attention=False): the fusion "
                "layers' cross-attention is built from `fusion_layer`."
            )


__all__ = ["RETRIEVAL_FIELD_RANGES", "UMTRetrievalConfig", "STAGE2_VISION_DEFAULTS", "UMT_RETRIEVAL_PRESETS"]
