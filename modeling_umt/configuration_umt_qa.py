"""Configuration of UMT video question answering (`UMTForVideoQuestionAnswering`, official `UMT_QA`).

A composite config in the manner of `UMTRetrievalConfig`: `vision_config` is a `UMTConfig` (the video ViT with its
final norm; its tokens are used unpooled), `text_config` a transformers `BertConfig`. The question encoder is that
BERT split at `fusion_layer` (cross-attention to the video tokens from there on); the answer decoder is a causal BERT
of `num_hidden_layers - fusion_layer` layers, every one cross-attending to the question states
(qa_and_detection.md §A: 3 layers for BERT-base, 5 for BERT-large).
"""

from __future__ import annotations

import logging

from huggingface_hub.dataclasses import strict
from transformers import BertConfig
from transformers.configuration_utils import PreTrainedConfig

from .config_validation import NON_NEGATIVE, POSITIVE, ValidatedConfigMixin, check_config_fields
from .configuration_umt import UMTConfig
from .configuration_umt_retrieval import STAGE2_VISION_DEFAULTS

logger = logging.getLogger(__name__)

# Official QA fine-tuning: 12 frames (configs/qa*.py), no alignment heads (the QA model has no UTA loss).
QA_VISION_DEFAULTS: dict = {**STAGE2_VISION_DEFAULTS, "num_frames": 12, "uta_num_layers": 0}

# Bounds of the numeric fields (types and finiteness come from the annotations; see config_validation.py).
QA_FIELD_RANGES = {
    "fusion_layer": NON_NEGATIVE, "max_question_length": POSITIVE, "max_answer_length": POSITIVE,
    "rank_k": POSITIVE, "decoder_start_token_id": NON_NEGATIVE, "eos_token_id": NON_NEGATIVE,
    "initializer_range": NON_NEGATIVE,
}


@strict
class UMTQAConfig(ValidatedConfigMixin, PreTrainedConfig):
    r"""
    Configuration of `UMTForVideoQuestionAnswering`.

    Args:
        vision_config (`UMTConfig` or dict, optional): the video encoder (default: UMT-B/16 with the Stage-2 settings,
            12 frames, no alignment heads).
        text_config (`BertConfig` or dict, optional): the BERT of the question encoder; the answer decoder copies its
            sizes with `num_hidden_layers - fusion_layer` layers (default: bert-base-uncased sizes).
        fusion_layer (`int`, defaults to 9): first question-encoder layer with cross-attention to the video tokens.
        max_question_length (`int`, defaults to 25): question tokens (official `max_q_len`).
        max_answer_length (`int`, defaults to 5): answer tokens, `[CLS] answer [SEP] [SEP]` truncated (`max_a_len`).
        rank_k (`int`, defaults to 128): candidates re-scored by `rank_answers` (official `k_test`).
        decoder_start_token_id (`int`, defaults to 101): the `[CLS]` id every answer starts with.
        eos_token_id (`int`, defaults to 102): the `[SEP]` id that ends an answer in `generate`.
        initializer_range (`float`, defaults to 0.02): std of the normal init of the BERT-side weights.
    """

    model_type = "umt_qa"
    sub_configs_defaults = {"vision_config": UMTConfig, "text_config": BertConfig}

    vision_config: dict | UMTConfig | None = None
    text_config: dict | BertConfig | None = None
    fusion_layer: int = 9
    max_question_length: int = 25
    max_answer_length: int = 5
    rank_k: int = 128
    decoder_start_token_id: int = 101
    eos_token_id: int = 102
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.vision_config is None:
            self.vision_config = UMTConfig(**QA_VISION_DEFAULTS)
        super().__post_init__(**kwargs)

    def decoder_config(self) -> BertConfig:
        """The answer decoder's BertConfig: the question BERT's sizes, `num_hidden_layers - fusion_layer` layers,
        causal, cross-attention in every layer (to the question states, whose width is the BERT width)."""
        values = self.text_config.to_dict()
        for key in ("architectures", "_name_or_path", "transformers_version", "model_type", "auto_map"):
            values.pop(key, None)
        values.update(
            num_hidden_layers=self.text_config.num_hidden_layers - self.fusion_layer,
            is_decoder=True,
            add_cross_attention=True,
            tie_word_embeddings=True,
            bos_token_id=self.decoder_start_token_id,
            decoder_start_token_id=self.decoder_start_token_id,
            eos_token_id=self.eos_token_id,
        )
        return BertConfig(**values)

    def validate_architecture(self):
        """Part of `@strict` validation: each message names the field, its value and what is expected."""
        check_config_fields(self, QA_FIELD_RANGES)
        if not isinstance(self.vision_config, UMTConfig):
            raise TypeError(f"`vision_config` must be a UMTConfig or a dict, got {type(self.vision_config).__name__}.")
        if not isinstance(self.text_config, BertConfig):
            raise TypeError(f"`text_config` must be a BertConfig or a dict, got {type(self.text_config).__name__}.")
        layers = self.text_config.num_hidden_layers
        if not 0 <= self.fusion_layer < layers:
            raise ValueError(
                f"`fusion_layer` ({self.fusion_layer}) must be in [0, `text_config.num_hidden_layers` ({layers})): the "
                "answer decoder has num_hidden_layers - fusion_layer >= 1 layers."
            )
        if self.max_answer_length < 2:
            raise ValueError(f"`max_answer_length` must be >= 2 ([CLS] + one token), got {self.max_answer_length}.")
        vocab = self.text_config.vocab_size
        for name in ("decoder_start_token_id", "eos_token_id"):
            if getattr(self, name) >= vocab:  # a warning, as in UMTRetrievalConfig: a BERT often comes before its ids
                logger.warning("`%s` (%d) is not a token id below `text_config.vocab_size` (%d): set it to the "
                               "tokenizer's id before answers are decoded.", name, getattr(self, name), vocab)
        if self.text_config.is_decoder or self.text_config.add_cross_attention:
            raise ValueError(
                "`text_config` must be a plain BERT encoder (is_decoder=False, add_cross_attention=False): the fusion "
                "layers and the decoder are built from `fusion_layer`."
            )


__all__ = ["QA_FIELD_RANGES", "QA_VISION_DEFAULTS", "UMTQAConfig"]
