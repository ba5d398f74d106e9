"""The official video-QA family (`UMT_QA`, `ckpt_best.pth` of tasks/vqa.py) -> UMTForVideoQuestionAnswering.

Layout (qa_and_detection.md §A): the video ViT under `vision_encoder.encoder.*` (final norm, no pool_norm), the
question BERT directly under `text_encoder.*` (all layers; cross-attention from fusion_layer), and the answer decoder
`text_decoder.bert.*` (L - fusion_layer layers, cross-attention in each) + its LM head `text_decoder.cls.*`, tied to
the decoder's own word embeddings. A checkpoint may still carry the UTA heads `vision_encoder.clip_decoder.*` and the
teacher `clip_teacher.*` of the Stage-2 model it started from; QA uses neither (dropped).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..configuration_umt_qa import QA_VISION_DEFAULTS, UMTQAConfig
from ..modeling_umt_qa import UMTForVideoQuestionAnswering
from .base import ConversionError, Family, Settings, block_count
from .keymap import KeyMap, vit_key_map
from .stage2_families import infer_bert
from .vit_families import backbone_pattern, infer_vit

__all__ = ["VIDEO_QA"]

_VISION = "vision_encoder.encoder."
_DECODER = "text_decoder.bert."


def _infer_qa(sd: Mapping[str, torch.Tensor], settings: Settings) -> dict:
    saved_text = settings.saved_value("text_config") or {}
    vision = dict(QA_VISION_DEFAULTS)
    vision.update(infer_vit(sd, _VISION, settings, frames=12, image_size=224,
                            layout_why="official QA fine-tuning (configs/qa*.py: 12 frames)",
                            saved_vision=settings.saved_value("vision_config")))
    vision["uta_num_layers"] = 0
    text, fusion = infer_bert(sd, settings, "text_encoder.", saved_text)
    decoder_layers = block_count(sd, f"{_DECODER}encoder.layer.", "decoder layer")
    if decoder_layers != text["num_hidden_layers"] - fusion:
        raise ConversionError(
            f"The answer decoder has {decoder_layers} layers (`{_DECODER}encoder.layer.*`) but the question encoder's "
            f"{text['num_hidden_layers']} layers with fusion from {fusion} give {text['num_hidden_layers'] - fusion}."
        )
    return dict(vision_config=vision, text_config=text, fusion_layer=settings.pick("fusion_layer", weights=fusion))


def _key_map(config: UMTQAConfig) -> KeyMap:
    vc = config.vision_config
    return vit_key_map(vc.num_hidden_layers, vc.qkv_bias, _VISION, "vision_model.", final_norm=True) + KeyMap(
        prefixes=(("text_encoder.", "text_model."), ("text_decoder.", "text_decoder."))
    )


def _check_exportable(model: UMTForVideoQuestionAnswering) -> None:
    vision, text = model.config.vision_config.hidden_size, model.config.text_config.hidden_size
    if vision != text:
        raise ConversionError(
            f"The official UMT_QA sizes its decoder's cross-attention by the video width, so it only runs with equal "
            f"video and text widths; this model has video width {vision} and text width {text}."
        )


VIDEO_QA = Family(
    name="qa", description="official video QA checkpoint (UMT_QA: qa_msrvtt_b16_25m.pth, ckpt_best.pth, ...)",
    architecture="UMTForVideoQuestionAnswering", config_class=UMTQAConfig, model_class=UMTForVideoQuestionAnswering,
    matches=lambda keys: any(k.startswith("text_decoder.") for k in keys),
    key_pattern=re.compile("|".join([
        backbone_pattern(_VISION),
        r"vision_encoder\.clip_decoder\..+",
        r"clip_teacher\..+",
        r"text_encoder\.(?!bert\.|cls\.).+",
        r"text_decoder\.(bert|cls)\..+",
    ])),
    infer_config=_infer_qa,
    key_map=_key_map,
    dropped=(
        (r"clip_teacher\..+", "clip_teacher.* (the frozen teacher; QA does not use it)"),
        (r"vision_encoder\.clip_decoder\..+", "vision_encoder.clip_decoder.* (UTA heads; QA does not use them)"),
        (r"text_(encoder|decoder\.bert)\.embeddings\.position_ids", "position_ids (a BERT buffer)"),
    ),
    check_exportable=_check_exportable,
    flags=("model_size", "num_frames", "image_size", "num_attention_heads", "text_num_attention_heads",
           "fusion_layer"),
    tied=(("text_decoder.cls.predictions.decoder.weight", "text_decoder.bert.embeddings.word_embeddings.weight"),
          ("text_decoder.cls.predictions.decoder.bias", "text_decoder.cls.predictions.bias")),
)
