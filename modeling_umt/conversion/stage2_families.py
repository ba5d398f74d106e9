"""The Stage-2 (multi-modality) families -> UMTForVideoTextRetrieval (official_umt.md §7 c).

Both hold the video ViT under `vision_encoder.encoder.*` (blocks as Stage 1), `vision_encoder.pool_norm`, the UTA
heads `vision_encoder.clip_decoder.*`, the projections, `temp`, `itm_head` and, often, the frozen teacher
`clip_teacher.*` (dropped: load it with `UMTTeacher.from_official_state_dict`). They differ in the text encoder:
pre-training files hold `text_encoder.bert.*` + the MLM head `text_encoder.cls.*`; retrieval fine-tunes hold the
BERT directly under `text_encoder.*` (the official loader strips `bert.`) and no MLM head.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..configuration_umt import UMTConfig
from ..configuration_umt_retrieval import STAGE2_VISION_DEFAULTS, UMTRetrievalConfig
from ..modeling_umt_retrieval import UMTForVideoTextRetrieval
from .base import RELEASED_BERT_HEADS, ConversionError, Family, Settings, block_count, majority_dim, pick_heads
from .keymap import KeyMap, norm_key_map, uta_key_map, vit_key_map
from .vit_families import backbone_pattern, infer_vit

__all__ = ["STAGE2_PRETRAINING", "STAGE2_RETRIEVAL", "infer_bert"]

_VISION = "vision_encoder.encoder."
_SHARED_PATTERNS = (
    backbone_pattern(_VISION),
    r"vision_encoder\.pool_norm\.(weight|bias)",
    r"vision_encoder\.clip_decoder\.\d+\.(head|norm)\.(weight|bias)",
    r"(vision_proj|text_proj|itm_head)\.(weight|bias)",
    r"temp",
    r"clip_teacher\..+",
)
_FLAGS = ("model_size", "num_frames", "image_size", "num_attention_heads", "text_num_attention_heads", "text_pooling",
          "fusion_layer")
_DROPPED = (
    (r"clip_teacher\..+", "clip_teacher.* (the frozen teacher: UMTTeacher.from_official_state_dict loads it)"),
    (r"text_encoder\.(bert\.)?embeddings\.position_ids", "position_ids (a BERT buffer)"),
)


def infer_bert(sd: Mapping[str, torch.Tensor], settings: Settings, bert: str, saved_text: Mapping) -> tuple[dict, int]:
    """(BertConfig keywords, first fusion layer) of the official BERT under `bert` (cross-attention must sit on its
    last layers)."""
    words = sd.get(f"{bert}embeddings.word_embeddings.weight")
    if words is None or words.ndim != 2:
        raise ConversionError(f"Stage-2 checkpoint has no 2-D `{bert}embeddings.word_embeddings.weight`.")
    layers = block_count(sd, f"{bert}encoder.layer.", "BERT layer")
    fusion = [i for i in range(layers) if f"{bert}encoder.layer.{i}.crossattention.self.query.weight" in sd]
    if not fusion or fusion != list(range(fusion[0], layers)):
        raise ConversionError(f"Cross-attention must sit on the last BERT layers; found it on layers {fusion}.")
    width = majority_dim(sd, [(f"{bert}embeddings.word_embeddings.weight", 1),
                              (f"{bert}embeddings.LayerNorm.weight", 0)], "BERT width")
    text = dict(
        vocab_size=int(words.shape[0]), hidden_size=width, num_hidden_layers=layers,
        num_attention_heads=pick_heads(settings, "text_num_attention_heads", width, layers, RELEASED_BERT_HEADS,
                                       saved_text.get("num_attention_heads"), "BERT text encoder"),
        intermediate_size=majority_dim(sd, [(f"{bert}encoder.layer.{i}.intermediate.dense.weight", 0)
                                            for i in range(layers)], "BERT MLP width"),
        max_position_embeddings=majority_dim(sd, [(f"{bert}embeddings.position_embeddings.weight", 0)],
                                             "BERT positions"),
        type_vocab_size=majority_dim(sd, [(f"{bert}embeddings.token_type_embeddings.weight", 0)], "BERT token types"),
    )
    return text, fusion[0]


def _infer(sd: Mapping[str, torch.Tensor], settings: Settings, *, bert: str, frames: int, frames_why: str,
           mlm_head: bool) -> dict:
    """UMTRetrievalConfig keywords; `bert` is the prefix of the BERT keys."""
    saved_vision = settings.saved_value("vision_config")
    saved_text = settings.saved_value("text_config") or {}
    vision = dict(STAGE2_VISION_DEFAULTS)
    vision.update(infer_vit(sd, _VISION, settings, frames=frames, image_size=224, layout_why=frames_why,
                            saved_vision=saved_vision))
    uta = block_count(sd, "vision_encoder.clip_decoder.", "clip_decoder")
    vision["uta_num_layers"] = uta
    if uta:
        vision["uta_output_dim"] = majority_dim(
            sd, [(f"vision_encoder.clip_decoder.{k}.head.weight", 0) for k in range(uta)], "UTA width")
    text, fusion = infer_bert(sd, settings, bert, saved_text)
    return dict(
        vision_config=vision, text_config=text, use_mlm_head=mlm_head,
        fusion_layer=settings.pick("fusion_layer", weights=fusion),
        embed_dim=majority_dim(sd, [("vision_proj.weight", 0), ("text_proj.weight", 0)], "contrastive width"),
        text_pooling=settings.pick("text_pooling", saved=settings.saved_value("text_pooling"), default="cls",
                                   why="the official [CLS] token"),
    )


def _infer_pretraining(sd, settings):
    return _infer(sd, settings, bert="text_encoder.bert.", frames=4, mlm_head=True,
                  frames_why="official Stage-2 pre-training (configs/pretrain.py)")


def _infer_retrieval(sd, settings):
    return _infer(sd, settings, bert="text_encoder.", frames=12, mlm_head=False,
                  frames_why="official retrieval fine-tuning (configs/ret_*.py)")


def _key_map(config: UMTRetrievalConfig, text: KeyMap) -> KeyMap:
    vc: UMTConfig = config.vision_config
    keymap = (vit_key_map(vc.num_hidden_layers, vc.qkv_bias, _VISION, "vision_model.", final_norm=True)
              + norm_key_map("vision_encoder.pool_norm", "vision_model.pooler.norm")
              + uta_key_map(vc.num_uta_layers, "vision_encoder.clip_decoder.") + KeyMap(renames=(("temp", "temp"),)))
    for head in ("vision_proj", "text_proj", "itm_head"):
        keymap += norm_key_map(head, head)
    return keymap + text


STAGE2_PRETRAINING = Family(
    name="stage2-pretraining", description="official Stage-2 pre-trained video-text model (b16_25m.pth, ...)",
    architecture="UMTForVideoTextRetrieval", config_class=UMTRetrievalConfig, model_class=UMTForVideoTextRetrieval,
    matches=lambda keys: (any(k.startswith("text_encoder.bert.") for k in keys)
                          and not any(k.startswith("text_decoder.") for k in keys)),
    key_pattern=re.compile("|".join([*_SHARED_PATTERNS, r"text_encoder\.(bert|cls)\..+"])),
    infer_config=_infer_pretraining,
    key_map=lambda config: _key_map(config, KeyMap(prefixes=(("text_encoder.bert.", "text_model."),
                                                             ("text_encoder.cls.", "mlm_head.")))),
    owns=lambda model: isinstance(model, UMTForVideoTextRetrieval) and model.mlm_head is not None,
    dropped=_DROPPED, flags=_FLAGS,
    tied=(("text_encoder.cls.predictions.decoder.weight", "text_encoder.bert.embeddings.word_embeddings.weight"),
          ("text_encoder.cls.predictions.decoder.bias", "text_encoder.cls.predictions.bias")),
)

STAGE2_RETRIEVAL = Family(
    name="stage2-retrieval", description="official Stage-2 retrieval fine-tune (ret_msrvtt_b16_25m.pth, ...)",
    architecture="UMTForVideoTextRetrieval", config_class=UMTRetrievalConfig, model_class=UMTForVideoTextRetrieval,
    matches=lambda keys: (any(k.startswith(("vision_encoder.", "text_encoder.")) for k in keys)
                          and not any(k.startswith(("text_encoder.bert.", "text_decoder.")) for k in keys)),
    key_pattern=re.compile("|".join([*_SHARED_PATTERNS, r"text_encoder\.(?!bert\.|cls\.).+"])),
    infer_config=_infer_retrieval,
    key_map=lambda config: _key_map(config, KeyMap(prefixes=(("text_encoder.", "text_model."),))),
    owns=lambda model: isinstance(model, UMTForVideoTextRetrieval) and model.mlm_head is None,
    dropped=_DROPPED, flags=_FLAGS,
)
