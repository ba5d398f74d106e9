"""UMT Stage 2: the video-language model behind UMT's video-text retrieval (official `multi_modality/models/umt.py`).

Two towers and a fusion encoder, in the ALBEF / VINDLU layout the official code uses:

    video (B, T, C, H, W) -> UMT ViT -> tokens (B, N, Dv) -> pool_norm(mean per frame) (B, T, Dv) -> vision_proj (B, T, E)
    text  (B, L) ids      -> BERT layers [0, fusion_layer)   -> [CLS] (B, H)                  -> text_proj   (B, E)
    (text tokens, video tokens) -> BERT layers [fusion_layer, L) with cross-attention -> [CLS] -> itm_head (B, 2)
                                                                                      -> tokens -> MLM head (B, L, V)

The similarity of a video and a text is the cosine of their projections averaged over the video's frames (images are
1-frame videos), divided by a learnable temperature (0.07, clamped to [0.001, 0.5]). Retrieval ranks by similarity and
re-ranks the top k = 128 by the ITM head's match logit (official_umt.md §5.6).

The text side (`modeling_umt_text.py`) reuses transformers' BERT pieces (`BertEmbeddings`, `BertLayer`,
`BertAttention`, `BertIntermediate`, `BertOutput`, `BertOnlyMLMHead`); only the fusion layer (self-attention,
cross-attention whose keys/values come from the video width, feed-forward) is assembled there. Parameter names follow
BERT's, so any BERT checkpoint loads into it (`load_text_encoder`) with only the cross-attention left to initialise.

Shapes: B batch, T frames, N video tokens (visible ones when masked), Dv video width, L text length, H text width,
E embed_dim, V vocabulary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, BertConfig, BertForMaskedLM
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.modeling_utils import PreTrainedModel
from transformers.models.bert.modeling_bert import BertLMPredictionHead, BertOnlyMLMHead
from transformers.utils import ModelOutput, logging

from .alignment import UMTAlignmentHead, UMTAlignmentHeads
from .configuration_umt import UMTConfig
from .configuration_umt_retrieval import STAGE2_VISION_DEFAULTS, UMTRetrievalConfig
from .inputs import check_text_inputs
from .losses import mask_tokens_for_mlm, mlm_loss, video_text_similarity, vtc_loss, vtm_loss, vtm_negatives
from .modeling_umt import UMTForPreTraining, UMTVideoModel
from .modeling_umt_text import UMTTextModel
from .storage import AlignedLoadingMixin

logger = logging.get_logger(__name__)

# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class UMTVideoFeaturesOutput(BaseModelOutputWithPooling):
    """`get_video_features` output.

    last_hidden_state: (B, N, Dv) video tokens after the final LayerNorm (what the fusion layers attend to).
    pooler_output: (B, E) the retrieval embedding: per-frame projections, each L2-normalised, averaged over frames
        (an image or a mean-pooled clip has one "frame", so this is its unit projection). `text_embeds @
        video_embeds.T` is then exactly the official frame-averaged cosine; do not re-normalise it.
    projected_embeds: (B, T', E) the raw projections `vision_proj(pool_norm(...))`, T' = frames (1 when mean-pooled).
    """

    projected_embeds: torch.Tensor | None = None


@dataclass
class UMTTextFeaturesOutput(BaseModelOutputWithPooling):
    """`get_text_features` output.

    last_hidden_state: (B, L, H) text tokens after the text-only layers (input of the fusion layers).
    pooler_output: (B, E) the L2-normalised projection of [CLS].
    projected_embeds: (B, E) the raw projection `text_proj([CLS])`.
    """

    projected_embeds: torch.Tensor | None = None


@dataclass
class UMTVideoTextOutput(ModelOutput):
    """`UMTForVideoTextRetrieval.forward` output.

    loss: weighted sum of the Stage-2 losses (when `return_loss`). loss_vtc, loss_vtm, loss_mlm, loss_uta: each
        unweighted loss (None when its weight is 0 or its inputs are missing).
    logits_per_video: (B_v, B_t) frame-averaged cosine / temperature. logits_per_text: its transpose.
    video_embeds, text_embeds: (B, E) retrieval embeddings (see the features outputs).
    vtm_logits: (3B, 2) ITM logits of [positives; negative videos; negative texts] when VTM ran.
    uta_features: (K, B, N_vis, D_teacher) the student's alignment-head outputs when UTA ran.
    """

    loss: torch.Tensor | None = None
    loss_vtc: torch.Tensor | None = None
    loss_vtm: torch.Tensor | None = None
    loss_mlm: torch.Tensor | None = None
    loss_uta: torch.Tensor | None = None
    logits_per_video: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    video_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    vtm_logits: torch.Tensor | None = None
    uta_features: torch.Tensor | None = None
    video_model_output: UMTVideoFeaturesOutput | None = None
    text_model_output: UMTTextFeaturesOutput | None = None

    def to_tuple(self) -> tuple:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in super().to_tuple())


@dataclass
class UMTRetrievalScores(ModelOutput):
    """Scores of every video against every text (`UMTForVideoTextRetrieval.retrieval_scores`).

    itc_v2t: (V, T) plain frame-averaged cosine (temperature 1), the official `*_emb` metrics.
    itm_v2t: (V, T) for each video, the ITM match logit of its top-k texts by ITC; -100 elsewhere.
    itm_t2v: (T, V) for each text, the ITM match logit of its top-k videos by ITC; -100 elsewhere.
    """

    itc_v2t: torch.Tensor | None = None
    itm_v2t: torch.Tensor | None = None
    itm_t2v: torch.Tensor | None = None


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------
class UMTRetrievalPreTrainedModel(AlignedLoadingMixin, PreTrainedModel):
    config: UMTRetrievalConfig
    config_class = UMTRetrievalConfig
    base_model_prefix = "umt_retrieval"
    main_input_name = "pixel_values"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["UMTEmbeddings", "UMTLayer", "BertEmbeddings", "BertLayer", "UMTFusionLayer"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, UMTAlignmentHead):  # official Stage 2 initialises the whole vision side with xavier
            init.xavier_uniform_(module.dense.weight)
            init.zeros_(module.dense.bias)
            init.ones_(module.norm.weight)
            init.zeros_(module.norm.bias)
        elif isinstance(module, UMTAlignmentHeads):
            num_patches = self.config.vision_config.num_patches
            init.copy_(module.position_embeddings, module.compute_position_embeddings(num_patches))
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, BertLMPredictionHead):
            init.zeros_(module.bias)
        if isinstance(module, UMTForVideoTextRetrieval):
            init.constant_(module.temp, self.config.temperature_init)


class UMTForVideoTextRetrieval(UMTRetrievalPreTrainedModel):
    """UMT Stage-2 model: video encoder + pool_norm + vision_proj, BERT text encoder + text_proj, temperature,
    ITM head over the fusion layers and (optionally) the MLM head.

    Interface in the manner of CLIP / VideoPrism:
        get_video_features(pixel_values)              -> pooler_output (B, E) retrieval embedding
        get_text_features(input_ids, attention_mask)  -> pooler_output (B, E) retrieval embedding
        forward(pixel_values, input_ids, attention_mask, return_loss=...) -> logits_per_video / logits_per_text
            (+ the Stage-2 losses: VTC, VTM with hard negatives, MLM, UTA given teacher features)
        get_itm_logits(...)                           -> (B, 2) video-text matching logits through the fusion layers
        retrieval_scores(...)                         -> similarity matrix and ITM re-ranking of the top k

    Videos are (B, T, C, H, W), ImageNet-normalised; images are (B, 1, C, H, W). The sin-cos position table is
    computed for the input's frame count (`interpolate_pos_encoding=True` by default; with the Stage-2 rule
    "direct" this is exact for any T, as the official code regenerates it).
    """

    def __init__(self, config: UMTRetrievalConfig):
        super().__init__(config)
        vc, tc = config.vision_config, config.text_config
        self.vision_model = UMTVideoModel(vc)
        self.uta_heads = UMTAlignmentHeads(vc)
        self.vision_proj = nn.Linear(vc.hidden_size, config.embed_dim)
        self.text_model = UMTTextModel(tc, config.fusion_layer, vc.hidden_size)
        self.text_proj = nn.Linear(tc.hidden_size, config.embed_dim)
        self.temp = nn.Parameter(torch.tensor(float(config.temperature_init)))
        self.itm_head = nn.Linear(tc.hidden_size, 2)
        self.mlm_head = BertOnlyMLMHead(tc) if config.use_mlm_head else None
        self._tied_weights_keys = (
            {
                "mlm_head.predictions.decoder.weight": "text_model.embeddings.word_embeddings.weight",
                "mlm_head.predictions.decoder.bias": "mlm_head.predictions.bias",
            }
            if config.use_mlm_head
            else None
        )
        self.post_init()

    # ---- accessors ------------------------------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_model.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.text_model.embeddings.word_embeddings = value

    def get_output_embeddings(self) -> nn.Linear | None:
        return None if self.mlm_head is None else self.mlm_head.predictions.decoder

    def no_weight_decay(self) -> set[str]:
        """Nothing beyond the 1-D/bias rule: the temperature gets weight decay, as in the official recipe."""
        return set()

    @torch.no_grad()
    def clamp_temperature(self) -> None:
        """Clamp `temp` in place into [temperature_min, temperature_max] (official, at every forward)."""
        self.temp.clamp_(self.config.temperature_min, self.config.temperature_max)

    # ---- video ----------------------------------------------------------------------------------------------------
    def _project_video(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pooled (B, Dv) or (B, T', Dv) -> raw projections (B, T', E), retrieval embedding (B, E)."""
        if pooled.ndim == 2:
            pooled = pooled[:, None]
        projected = self.vision_proj(pooled)
        return projected, F.normalize(projected, dim=-1).mean(1)

    def get_video_features(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = True,
        **kwargs,
    ) -> UMTVideoFeaturesOutput:
        """pixel_values (B, T, C, H, W) -> tokens (B, N, Dv), retrieval embedding pooler_output (B, E) and the raw
        per-frame projections (B, T', E). `bool_masked_pos` (B, N), True = dropped, pools all visible tokens at once
        (official training: `keep_temporal` is off under a mask)."""
        out = self.vision_model(
            pixel_values, bool_masked_pos=bool_masked_pos, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs
        )
        projected, embeds = self._project_video(out.pooler_output)
        return UMTVideoFeaturesOutput(
            last_hidden_state=out.last_hidden_state,
            pooler_output=embeds,
            projected_embeds=projected,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )

    def _encode_video_for_training(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None,
        with_uta: bool,
        interpolate_pos_encoding: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One pass through the ViT returning the tokens (B, N_vis, Dv), the pooled features ((B, Dv) under a mask,
        else (B, T', Dv) with temporal pooling) and, when `with_uta`, the alignment-head outputs (K, B, N_vis, Dt):
        the last K blocks through the shared final norm, plus the sin-cos table, through one head each."""
        layers = tuple(self.config.vision_config.uta_layer_indices) if with_uta else ()
        out = self.vision_model.forward_intermediates(pixel_values, layers, bool_masked_pos, interpolate_pos_encoding)
        uta = self.uta_heads(out.intermediates, out.bool_masked_pos) if with_uta else None
        return out.last_hidden_state, out.pooler_output, uta

    # ---- text -----------------------------------------------------------------------------------------------------
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> UMTTextFeaturesOutput:
        """input_ids (B, L), attention_mask (B, L) -> tokens after the text-only layers (B, L, H), L2-normalised
        projection of [CLS] (or of the token mean, `config.text_pooling="mean"`) as pooler_output (B, E) and the raw
        projection (B, E)."""
        check_text_inputs(input_ids, attention_mask)
        hidden = self.text_model(
            input_ids, attention_mask, token_type_ids=token_type_ids, position_ids=position_ids, mode="text", **kwargs
        ).last_hidden_state
        projected = self.text_proj(self._pool_text(hidden, attention_mask))
        return UMTTextFeaturesOutput(
            last_hidden_state=hidden, pooler_output=F.normalize(projected, dim=-1), projected_embeds=projected
        )

    # ---- matching -------------------------------------------------------------------------------------------------
    def get_itm_logits(
        self,
        video_hidden_states: torch.Tensor | None = None,
        text_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        video_attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Video-text matching logits (B, 2) for B pairs through the fusion layers (class 1 = match), read from the
        fused [CLS] (official) or the fused token mean (`config.text_pooling="mean"`).

        Give features (`video_hidden_states` (B, N, Dv) from `get_video_features`, `text_hidden_states` (B, L, H) from
        `get_text_features`, `attention_mask` (B, L)) or raw inputs (`pixel_values`, `input_ids`, `attention_mask`).
        video_attention_mask: (B, N), None = every video token is visible (official). One video (batch 1) is
        broadcast against B texts (its cross-attention keys and values are computed once).
        """
        if video_hidden_states is None:
            if pixel_values is None:
                raise ValueError("`get_itm_logits` needs `video_hidden_states` or `pixel_values`.")
            video_hidden_states = self.get_video_features(pixel_values).last_hidden_state
        if text_hidden_states is None:
            if input_ids is None:
                raise ValueError("`get_itm_logits` needs `text_hidden_states` or `input_ids`.")
            text_hidden_states = self.get_text_features(input_ids, attention_mask).last_hidden_state
        if video_hidden_states.shape[0] not in (1, text_hidden_states.shape[0]):
            raise ValueError(
                f"`video_hidden_states` ({video_hidden_states.shape[0]}) and `text_hidden_states` "
                f"({text_hidden_states.shape[0]}) must hold the same number of pairs (or one video for all texts)."
            )
        fused = self.text_model(
            attention_mask=attention_mask,
            hidden_states=text_hidden_states,
            encoder_hidden_states=video_hidden_states,
            encoder_attention_mask=video_attention_mask,
            mode="fusion",
        ).last_hidden_state
        return self.itm_head(self._pool_text(fused, attention_mask))

    def _pool_text(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, L, H) -> (B, H): [CLS] (official) or the mean over non-padding tokens (`config.text_pooling`)."""
        if self.config.text_pooling == "mean":
            weights = torch.ones(hidden.shape[:2], device=hidden.device) if attention_mask is None else attention_mask
            weights = weights.to(hidden.dtype)[..., None]
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return hidden[:, 0]

    @torch.no_grad()
    def retrieval_scores(
        self,
        video_hidden_states: torch.Tensor,
        video_embeds: torch.Tensor,
        text_hidden_states: torch.Tensor,
        text_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        k: int | None = None,
        batch_size: int = 32,
    ) -> UMTRetrievalScores:
        """Rank every text for every video and every video for every text (official `retrieval_utils.evaluation`).

        video_hidden_states: (V, N, Dv), video_embeds: (V, E) (`get_video_features` last_hidden_state / pooler_output,
        unmasked); text_hidden_states: (T, L, H), text_embeds: (T, E), attention_mask: (T, L) (`get_text_features`).
        k: candidates re-ranked by ITM per query (default `config.itm_rerank_k`, 128); batch_size: pairs per fusion
        call. Returns ITC (V, T) and the ITM re-ranked scores (V, T) and (T, V), -100 outside each query's top k.
        """
        k = self.config.itm_rerank_k if k is None else k
        if k < 1 or batch_size < 1:
            raise ValueError(f"`k` ({k}) and `batch_size` ({batch_size}) must be >= 1.")
        itc = video_embeds.float() @ text_embeds.float().T  # (V, T): mean over frames of the cosine
        num_v, num_t = itc.shape
        # The ITM logit of a pair does not depend on the direction it is asked from, so each pair in the union of the
        # two top-k sets is scored once. Video-major first: one video broadcast against a batch of its candidate
        # texts (its cross-attention keys/values computed once), then the text-major pairs not yet scored.
        itm = itc.new_full((num_v, num_t), float("nan"))
        top_texts = itc.topk(min(k, num_t), dim=1).indices  # (V, k)
        top_videos = itc.topk(min(k, num_v), dim=0).indices.T  # (T, k)
        for v in range(num_v):
            for s in range(0, top_texts.shape[1], batch_size):
                idx = top_texts[v, s : s + batch_size]
                logits = self.get_itm_logits(video_hidden_states[v : v + 1], text_hidden_states[idx], attention_mask[idx])
                itm[v, idx] = logits[:, 1].float()
        for t in range(num_t):
            idx = top_videos[t][torch.isnan(itm[top_videos[t], t])]
            for s in range(0, len(idx), batch_size):
                chunk = idx[s : s + batch_size]
                logits = self.get_itm_logits(
                    video_hidden_states[chunk],
                    text_hidden_states[t : t + 1].expand(len(chunk), -1, -1),
                    attention_mask[t : t + 1].expand(len(chunk), -1),
                )
                itm[chunk, t] = logits[:, 1].float()
        itm_v2t = itc.new_full((num_v, num_t), -100.0)
        itm_v2t.scatter_(1, top_texts, itm.gather(1, top_texts))
        itm_t2v = itc.new_full((num_t, num_v), -100.0)
        itm_t2v.scatter_(1, top_videos, itm.T.gather(1, top_videos))
        return UMTRetrievalScores(itc_v2t=itc, itm_v2t=itm_v2t, itm_t2v=itm_t2v)

    # ---- training forward -----------------------------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        bool_masked_pos: torch.Tensor | None = None,
        teacher_features: torch.Tensor | None = None,
        ids: torch.Tensor | None = None,
        return_loss: bool | None = None,
        mlm_input_ids: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        vtm_negatives_override: tuple[torch.Tensor, torch.Tensor] | None = None,
        gather_vtc: bool = True,
        interpolate_pos_encoding: bool = True,
        **kwargs,
    ) -> UMTVideoTextOutput:
        """
        pixel_values: (B, T, C, H, W). input_ids, attention_mask: (B, L) tokenised captions, pair i = (video i, text i).
        bool_masked_pos: (B, N) bool, True = video token dropped (the teacher's semantic mask in Stage 2).
        teacher_features: (K, B, N, Dt) (or already gathered (K, B, N_vis, Dt)) teacher targets for UTA.
        ids: (B,) ints; pairs sharing an id are positives of each other in VTC/VTM (None: only the diagonal).
        return_loss: compute the Stage-2 losses weighted by `config.*_loss_weight` (default: when training).
        mlm_input_ids, mlm_labels: (B, L) a fixed MLM corruption (default: drawn with `mask_tokens_for_mlm`).
        vtm_negatives_override: (video_negatives (B,), text_negatives (B,)) fixed VTM negatives (default: drawn).
        gather_vtc: all-gather VTC features across processes (no-op on one process).
        """
        self.clamp_temperature()
        c = self.config
        return_loss = self.training if return_loss is None else return_loss
        with_uta = bool(
            return_loss and c.uta_loss_weight and teacher_features is not None and len(self.uta_heads) > 0
        )
        video_tokens, pooled, uta = self._encode_video_for_training(
            pixel_values, bool_masked_pos, with_uta, interpolate_pos_encoding
        )
        video_projected, video_embeds = self._project_video(pooled)
        text = self.get_text_features(input_ids, attention_mask)
        temp = self.temp
        logits_per_video = video_text_similarity(video_projected, text.projected_embeds, temp)

        losses: dict[str, torch.Tensor | None] = dict(loss_vtc=None, loss_vtm=None, loss_mlm=None, loss_uta=None)
        vtm_logits = None
        total = None
        if return_loss:
            if c.vtc_loss_weight:
                losses["loss_vtc"] = vtc_loss(video_projected, text.projected_embeds, temp, ids, gather=gather_vtc)
            if c.vtm_loss_weight:
                if vtm_negatives_override is None:
                    sim = video_text_similarity(video_projected.detach(), text.projected_embeds.detach(), temp.detach())
                    video_neg, text_neg = vtm_negatives(sim, ids, hard=c.vtm_hard_negatives)
                else:
                    video_neg, text_neg = vtm_negatives_override
                mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
                vtm_logits = self.get_itm_logits(
                    torch.cat([video_tokens, video_tokens[video_neg], video_tokens]),
                    torch.cat([text.last_hidden_state, text.last_hidden_state, text.last_hidden_state[text_neg]]),
                    torch.cat([mask, mask, mask[text_neg]]),
                )
                losses["loss_vtm"] = vtm_loss(vtm_logits)
            if c.mlm_loss_weight and self.mlm_head is not None:
                losses["loss_mlm"] = self.masked_lm_loss(
                    input_ids, attention_mask, video_tokens, mlm_input_ids=mlm_input_ids, mlm_labels=mlm_labels
                )
            if with_uta:
                losses["loss_uta"] = self.uta_heads.loss(uta, teacher_features, bool_masked_pos)
            weights = dict(
                loss_vtc=c.vtc_loss_weight, loss_vtm=c.vtm_loss_weight, loss_mlm=c.mlm_loss_weight,
                loss_uta=c.uta_loss_weight,
            )
            terms = [weights[name] * value for name, value in losses.items() if value is not None]
            total = sum(terms) if terms else None
        return UMTVideoTextOutput(
            loss=total,
            **losses,
            logits_per_video=logits_per_video,
            logits_per_text=logits_per_video.T,
            video_embeds=video_embeds,
            text_embeds=text.pooler_output,
            vtm_logits=vtm_logits,
            uta_features=uta,
            video_model_output=UMTVideoFeaturesOutput(
                last_hidden_state=video_tokens, pooler_output=video_embeds, projected_embeds=video_projected
            ),
            text_model_output=text,
        )

    def masked_lm_loss(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        video_hidden_states: torch.Tensor,
        mlm_input_ids: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """MLM conditioned on the video: corrupt the captions (50%, 80/10/10), run text-only then fusion layers with
        cross-attention to `video_hidden_states` (B, N, Dv), predict the original ids at the chosen positions.
        Logits are computed at those positions only (the same loss as over the whole sequence)."""
        if self.mlm_head is None:
            raise ValueError("This model has no MLM head (`config.use_mlm_head=False`).")
        if mlm_input_ids is None or mlm_labels is None:
            c = self.config
            mlm_input_ids, mlm_labels = mask_tokens_for_mlm(
                input_ids, c.mask_token_id, c.text_config.vocab_size, c.mlm_probability,
                pad_token_id=c.text_config.pad_token_id, cls_token_id=c.cls_token_id,
            )
        hidden = self.text_model(mlm_input_ids, attention_mask, mode="text").last_hidden_state
        hidden = self.text_model(
            attention_mask=attention_mask, hidden_states=hidden, encoder_hidden_states=video_hidden_states,
            mode="fusion",
        ).last_hidden_state
        chosen = mlm_labels != -100
        return mlm_loss(self.mlm_head(hidden[chosen]), mlm_labels[chosen])

    # ---- building from parts ----------------------------------------------------------------------------------------
    def load_text_encoder(self, name_or_path: str | os.PathLike) -> dict[str, list[str]]:
        """Copy a BERT's weights (any local directory or hub id `BertModel` / `BertForMaskedLM` loads) into the text
        encoder: embeddings and all layers (the fusion layers' cross-attention stays freshly initialised), and the MLM
        head when the checkpoint has one (its decoder is tied to the word embeddings either way).
        Returns {"missing": [...], "unexpected": [...]} of our text-side keys the checkpoint did not provide."""
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()  # the MLM head of a BertModel checkpoint is reported below instead
        try:
            bert, info = BertForMaskedLM.from_pretrained(name_or_path, output_loading_info=True)
        finally:
            logging.set_verbosity(verbosity)
        tc = self.config.text_config
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
            if getattr(bert.config, name) != getattr(tc, name):
                raise ValueError(
                    f"`name_or_path` {str(name_or_path)!r} has {name}={getattr(bert.config, name)} but "
                    f"`text_config.{name}` is {getattr(tc, name)}; build the config from that BERT's config."
                )
        result = self.text_model.load_state_dict(bert.bert.state_dict(), strict=False)
        missing = list(result.missing_keys)
        head_missing = [k for k in info["missing_keys"] if k.startswith("cls.")]
        if self.mlm_head is not None:
            if head_missing:
                missing += [f"mlm_head.{k[len('cls.'):]}" for k in head_missing if "decoder.weight" not in k]
            else:
                self.mlm_head.load_state_dict(bert.cls.state_dict(), strict=False)
        self.tie_weights()
        return {"missing": missing, "unexpected": list(result.unexpected_keys)}

    @classmethod
    def from_video_text_pretrained(
        cls,
        text_model_name_or_path: str | os.PathLike,
        video_model_name_or_path: str | os.PathLike | None = None,
        vision_config: UMTConfig | None = None,
        **config_kwargs,
    ) -> "UMTForVideoTextRetrieval":
        """Build a Stage-2 model from a BERT (local dir or hub id) and, optionally, a saved UMT video model (a Stage-1
        `UMTForPreTraining` directory — ours or a converted official one — or a `UMTVideoModel`).

        The video config is the saved one switched to the Stage-2 settings (temporal pooling, direct sin-cos rule,
        alignment heads without L2 and LayerNorm eps 1e-5), or `vision_config` when given (then no video weights
        unless `video_model_name_or_path` is also given). `config_kwargs` go to `UMTRetrievalConfig` (fusion_layer,
        embed_dim, loss weights, ...); `num_frames` among them sets the video's frame count.
        """
        num_frames = config_kwargs.pop("num_frames", None)
        text_config = BertConfig.from_pretrained(text_model_name_or_path)
        video_state = None
        if video_model_name_or_path is not None:
            saved = AutoConfig.from_pretrained(video_model_name_or_path)
            if not isinstance(saved, UMTConfig):
                raise ValueError(
                    f"`video_model_name_or_path` {str(video_model_name_or_path)!r} holds a {type(saved).__name__}, "
                    "expected a saved UMT video model (UMTConfig)."
                )
            if vision_config is None:
                overrides = {k: v for k, v in STAGE2_VISION_DEFAULTS.items() if k not in ("num_frames", "initializer_type")}
                vision_config = UMTConfig(**{**saved.to_dict(), **overrides})
            video_state = _load_video_state(video_model_name_or_path, saved)
        if vision_config is None:
            vision_config = UMTConfig(**STAGE2_VISION_DEFAULTS)
        if num_frames is not None:
            vision_config = UMTConfig(**{**vision_config.to_dict(), "num_frames": num_frames})
        config = UMTRetrievalConfig(vision_config=vision_config, text_config=text_config, **config_kwargs)
        model = cls(config)
        if video_state is not None:
            result = model.load_state_dict(video_state, strict=False)
            loaded = set(video_state) - set(result.unexpected_keys)
            if not loaded:
                raise ValueError(f"No video weights of {str(video_model_name_or_path)!r} fit the model.")
            if result.unexpected_keys:
                logger.warning("Video weights not used: %s", sorted(result.unexpected_keys)[:10])
        text_info = model.load_text_encoder(text_model_name_or_path)
        logger.info("Text encoder from %s; freshly initialised: %s", text_model_name_or_path, text_info["missing"][:8])
        return model


def _load_video_state(path: str | os.PathLike, saved: UMTConfig) -> dict[str, torch.Tensor]:
    """A saved UMT video model's weights renamed into `UMTForVideoTextRetrieval`'s layout (`umt.*` -> `vision_model.*`,
    `uta_heads.*` kept)."""
    arch = (saved.architectures or ["UMTVideoModel"])[0]
    if arch == "UMTForPreTraining":
        model = UMTForPreTraining.from_pretrained(path)
        state = {}
        for key, value in model.state_dict().items():
            if key.startswith("umt."):
                state["vision_model." + key[len("umt.") :]] = value
            elif key.startswith("uta_heads."):
                state[key] = value
        return state
    if arch in ("UMTVideoModel", "UMTForVideoClassification"):
        model = AutoModel.from_pretrained(path) if arch == "UMTVideoModel" else UMTVideoModel.from_pretrained(path)
        return {"vision_model." + k: v for k, v in model.state_dict().items()}
    raise ValueError(f"`video_model_name_or_path` {str(path)!r} is a {arch}; expected UMTForPreTraining or UMTVideoModel.")


__all__ = [
    "UMTForVideoTextRetrieval",
    "UMTRetrievalPreTrainedModel",
    "UMTRetrievalScores",
    "UMTTextFeaturesOutput",
    "UMTVideoFeaturesOutput",
    "UMTVideoTextOutput",
]
