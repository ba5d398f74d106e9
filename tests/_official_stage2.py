"""The official multi-modality UMT code (OpenGVLab/unmasked_teacher, `multi_modality/`) under transformers 5: the one
place that imports it, for the Stage-2 parity test and benchmarks/bench_stage2.py.

It imports models/{umt.py, criterions.py, backbones/vit/vit.py, backbones/vit/clip.py, backbones/bert/xbert.py},
which need timm and einops. xbert was written for transformers 4.x: three helpers it imports from
`transformers.modeling_utils`, its `init_weights()` call and, where transformers 5 dropped them, `get_head_mask` /
`invert_attention_mask` (the 4.x definitions) are shimmed while the context is open, and restored afterwards. Callers
overwrite or perturb the weights after building, so the `init_weights` shim changes nothing that is compared or
timed. Nothing of the official code is copied here: it is imported from the checkout.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types

import torch


@contextlib.contextmanager
def official_multi_modality(official_repo: str):
    """Yield a namespace (umt, criterions, vit, clip, xbert) of the official modules from `official_repo`; the
    transformers shims and sys.path/sys.modules entries are undone on exit. FileNotFoundError without the code."""
    import transformers.modeling_utils as mu
    import transformers.pytorch_utils as pu

    root = os.path.join(official_repo, "multi_modality")
    if not os.path.isfile(os.path.join(root, "models", "umt.py")):
        raise FileNotFoundError(f"official_repo={official_repo!r} has no multi_modality/models/umt.py")
    saved = {name: getattr(mu, name, None) for name in ("apply_chunking_to_forward", "prune_linear_layer",
                                                       "find_pruneable_heads_and_indices")}  # fmt: skip
    saved_init = mu.PreTrainedModel.__dict__.get("init_weights")
    mu.apply_chunking_to_forward = pu.apply_chunking_to_forward
    mu.prune_linear_layer = pu.prune_linear_layer
    mu.find_pruneable_heads_and_indices = lambda *args, **kwargs: None
    mu.PreTrainedModel.init_weights = lambda self: self.apply(self._init_weights)
    added = []
    if not hasattr(mu.PreTrainedModel, "get_head_mask"):  # removed in transformers 5; xbert passes head_mask=None
        mu.PreTrainedModel.get_head_mask = lambda self, head_mask, num_layers: [None] * num_layers
        added.append("get_head_mask")
    if not hasattr(mu.PreTrainedModel, "invert_attention_mask"):

        def invert_attention_mask(self, mask):
            mask = mask[:, None, None, :].to(self.dtype) if mask.dim() == 2 else mask[:, None].to(self.dtype)
            return (1.0 - mask) * torch.finfo(self.dtype).min

        mu.PreTrainedModel.invert_attention_mask = invert_attention_mask
        added.append("invert_attention_mask")
    sys.path.insert(0, root)
    before = set(sys.modules)
    try:
        from models import criterions, umt
        from models.backbones.bert import xbert
        from models.backbones.vit import clip, vit

        yield types.SimpleNamespace(umt=umt, criterions=criterions, xbert=xbert, vit=vit, clip=clip)
    finally:
        sys.path.remove(root)
        for name in set(sys.modules) - before:
            if name == "models" or name.startswith(("models.", "utils")):
                sys.modules.pop(name, None)
        for name, value in saved.items():
            if value is None:
                delattr(mu, name)
            else:
                setattr(mu, name, value)
        if saved_init is not None:
            mu.PreTrainedModel.init_weights = saved_init
        for name in added:
            delattr(mu.PreTrainedModel, name)


def build_official_umt(off, *, vision: dict, bert: dict, fusion_layer: int, embed_dim: int, mlm_probability: float,
                       pad_id: int, cls_id: int, mask_id: int, teacher: dict | None = None,
                       video_mask_ratio: float = 0.8) -> torch.nn.Module:  # fmt: skip
    """An official `UMT` assembled from its parts (its __init__ downloads BERT and CLIP weights), random weights.

    vision: `PretrainVisionTransformer` keyword arguments (img_size, patch_size, encoder_embed_dim, encoder_depth,
    encoder_num_heads, num_frames, clip_decoder_embed_dim, clip_output_dim, clip_return_layer, ...). bert: `BertConfig`
    keyword arguments of xbert. teacher: `backbones/vit/clip.VisionTransformer` keyword arguments (input_resolution,
    patch_size, width, layers, heads, output_dim, clip_return_layer) for `encode_teacher`, or None (no teacher). The
    attributes `encode_teacher` and `forward` read are set as the official Stage-2 config does (semantic masking of
    `video_mask_ratio` for videos, loss weights 1)."""
    bert_config = off.xbert.BertConfig(pad_token_id=pad_id, **bert)
    bert_config.fusion_layer, bert_config.encoder_width, bert_config.cross_module = (
        fusion_layer, vision["encoder_embed_dim"], "ca",
    )  # fmt: skip
    model = off.umt.UMT.__new__(off.umt.UMT)
    torch.nn.Module.__init__(model)
    model.config = types.SimpleNamespace(
        model=types.SimpleNamespace(vision_encoder=types.SimpleNamespace(keep_temporal=True))
    )
    model.is_pretrain = True
    model.vision_encoder = off.vit.PretrainVisionTransformer(tubelet_size=1, add_pool_norm=True, **vision)
    model.text_encoder = off.xbert.BertForMaskedLM(bert_config)
    model.vision_proj = torch.nn.Linear(vision["encoder_embed_dim"], embed_dim)
    model.text_proj = torch.nn.Linear(bert["hidden_size"], embed_dim)
    model.temp = torch.nn.Parameter(torch.ones([]) * 0.07)
    model.itm_head = torch.nn.Linear(bert["hidden_size"], 2)
    tokenizer = types.SimpleNamespace(pad_token_id=pad_id, cls_token_id=cls_id, mask_token_id=mask_id)
    model.criterion_uta = off.criterions.UTA_Loss("l2", "l2")
    model.criterion_vtc_vtm = off.criterions.VTC_VTM_Loss(True)
    model.criterion_mlm = off.criterions.MLMLoss(mlm_probability, tokenizer)
    model.loss_weight = types.SimpleNamespace(uta=1.0, vtc=1.0, vtm=1.0, mlm=1.0)
    # transformers 4.x ties the MLM decoder to the word embeddings inside init_weights (shimmed away): tie it here
    model.text_encoder.cls.predictions.decoder.weight = model.text_encoder.bert.embeddings.word_embeddings.weight
    model.clip_teacher = None
    if teacher is not None:
        model.clip_teacher = off.clip.VisionTransformer(**teacher).eval()
        for p in model.clip_teacher.parameters():
            p.requires_grad_(False)
        grid = vision["img_size"] // vision["patch_size"]
        model.clip_img_size = teacher["input_resolution"]
        model.video_mask_type = model.image_mask_type = "attention"
        model.video_window_size = (vision["num_frames"], grid, grid)
        model.image_window_size = (1, grid, grid)
        model.video_mask_ratio, model.image_mask_ratio = video_mask_ratio, 0.5
    return model
