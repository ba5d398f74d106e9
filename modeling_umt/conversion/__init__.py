"""Official UMT checkpoints (OpenGVLab/unmasked_teacher) <-> this package, as a table of families.

Families (`families.FAMILIES`; the kind of a checkpoint is detected from its keys, exactly one entry may match):

    name                 official keys                                           ours
    stage1               encoder.* (+ encoder.norm), clip_decoder.{k}.{head,norm}  UMTForPreTraining
    classifier           patch_embed.*, blocks.*, fc_norm.*, head.* [+ pos_embed]  UMTForVideoClassification
    stage2-pretraining   vision_encoder.*, text_encoder.bert.*, text_encoder.cls.*, UMTForVideoTextRetrieval
                         vision_proj, text_proj, temp, itm_head [+ clip_teacher.*]
    stage2-retrieval     the same with text_encoder.* (no bert., no MLM head)       UMTForVideoTextRetrieval
    ava-detection        patch_embed.*, blocks.*, norm.*, head.* (no fc_norm)      UMTForVideoActionDetection
    qa                   vision_encoder.*, text_encoder.*, text_decoder.{bert,cls}.* UMTForVideoQuestionAnswering

Every family maps its video encoder with the one ViT key map (`keymap.vit_key_map`; the fused `attn.qkv.weight`
rows are our query / key / value weights, `q_bias` / `v_bias` the query / value biases, k has no bias), used in both
directions, so a round trip official -> ours -> official -> ours is exact. A checkpoint is read once, through a
restricted unpickler (`safe_pickle`: official `args` Namespaces and `EasyDict` configs load; any other class is
refused before its code runs). Every setting the weights do not give (frames, image size, heads, text heads, text
pooling, labels, ...) is printed with its source and can be set by a flag (`base.Settings`); attention heads are
inferred only for released sizes (`base.RELEASED_VIT_HEADS`, `RELEASED_BERT_HEADS`), otherwise the flag is required.
`--reverse` stores our config in the exported checkpoint (`reading.SAVED_CONFIG_KEY`) so that converting the export
again needs no flag. The fixed sin-cos table is not a weight: a stored `pos_embed` is checked against ours and dropped.

Adding a family (e.g. AVA detection): write one `Family` entry — `matches` (its key test),
`key_pattern`, `infer_config` (shapes from the weights, other settings through `Settings.pick`), `key_map` (build it
from `vit_key_map` + `norm_key_map` / `KeyMap(prefixes=...)` for the new head, e.g. `text_decoder.bert.` <->
`text_decoder.`), `model_class` / `config_class`, and any `dropped` / `tied` keys — in a module of its own, add it
to `FAMILIES`, and remove its line from `families._NOT_YET`. Nothing else changes: reading, checking, building,
saving and `--reverse` are the same for every family.

Command line: `python -m modeling_umt.convert_original_checkpoint --help`.
"""

from .base import ConversionError, Family, Settings
from .convert import build_model, convert_checkpoint, convert_state_dict, reverse_checkpoint, to_official_state_dict
from .families import FAMILIES, detect_family, family_of_model
from .keymap import KeyMap, vit_key_map
from .reading import SAVED_CONFIG_KEY, id2label_from_file, load_official_checkpoint, unwrap_state_dict
from .vit_families import check_position_embeddings

__all__ = [
    "ConversionError",
    "Family",
    "Settings",
    "FAMILIES",
    "KeyMap",
    "SAVED_CONFIG_KEY",
    "build_model",
    "check_position_embeddings",
    "convert_checkpoint",
    "convert_state_dict",
    "detect_family",
    "family_of_model",
    "id2label_from_file",
    "load_official_checkpoint",
    "reverse_checkpoint",
    "to_official_state_dict",
    "unwrap_state_dict",
    "vit_key_map",
]
