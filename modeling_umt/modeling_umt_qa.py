"""UMT video question answering (official `multi_modality/models/umt_qa.py`, `UMT_QA`, ALBEF/BLIP style).

    video (B, T, C, H, W) -> UMT ViT -> final-norm tokens (B, N, Dv)   (not pooled)
    question (B, Lq) ids  -> BERT layers [0, fusion_layer) text only, [fusion_layer, L) + cross-attention to the video
                          -> question states (B, Lq, H)
    answer (A, La) ids    -> causal BERT decoder of L - fusion_layer layers, each cross-attending to the question
                             states of its question -> next-token logits (A, La, V)

The decoder is transformers' `BertLMHeadModel` (is_decoder, cross-attention in every layer): its parameter names are
the official `text_decoder.*` ones, its LM head is tied to its *own* word embeddings (not the encoder's), and it
generates. It starts as a copy of the question encoder's fusion layers, embeddings and MLM head
(`from_retrieval_model`, as official `setup_model(has_decoder=True)`).

Its cross-attention reads the question states, so its keys/values have the BERT width. The official code sizes them
by the *video* width instead and so only runs when both widths agree; here any widths work, and when they differ the
decoder's cross-attention keys/values start freshly initialised (the encoder's read the video width).

Training loss (`losses.weighted_answer_loss`): each answer's summed next-token cross-entropy, weighted by the answer's
frequency among the annotators' answers, summed over answers, divided by the number of questions. Evaluation ranks a
fixed answer list (`rank_answers`, the official protocol); `generate` gives free-form answers.

Shapes: B questions, A answers (sum of answers_per_question), K candidates, Lq / La question / answer lengths,
N video tokens, Dv video width, H text width, V vocabulary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, BertLMHeadModel
from transformers import initialization as init
from transformers.generation import GenerationMixin
from transformers.modeling_utils import PreTrainedModel
from transformers.models.bert.modeling_bert import BertLMPredictionHead
from transformers.utils import ModelOutput, logging

from .configuration_umt import UMTConfig
from .configuration_umt_qa import QA_VISION_DEFAULTS, UMTQAConfig
from .losses import answer_sequence_loss, weighted_answer_loss
from .modeling_umt import UMTEmbeddings, UMTVideoModel
from .modeling_umt_text import UMTTextModel
from .storage import AlignedLoadingMixin

logger = logging.get_logger(__name__)


@dataclass
class UMTVideoQAOutput(ModelOutput):
    """`UMTForVideoQuestionAnswering.forward` output.

    loss: Σ_answers weight · (summed CE of the answer) / B, when `labels` are given.
    answer_losses: (A,) each answer's summed next-token cross-entropy (unweighted).
    logits: (A, La, V) decoder logits for the answers (position t predicts token t + 1).
    vision_embeds: (B, N, Dv) the final-norm video tokens. question_embeds: (B, Lq, H) the question states.
    """

    loss: torch.Tensor | None = None
    answer_losses: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    vision_embeds: torch.Tensor | None = None
    question_embeds: torch.Tensor | None = None


class UMTQAPreTrainedModel(AlignedLoadingMixin, PreTrainedModel):
    config: UMTQAConfig
    config_class = UMTQAConfig
    base_model_prefix = "umt_qa"
    main_input_name = "pixel_values"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["UMTEmbeddings", "UMTLayer", "BertEmbeddings", "BertLayer", "UMTFusionLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Conv3d):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, BertLMPredictionHead):
            init.zeros_(module.bias)
        elif isinstance(module, UMTEmbeddings):
            init.copy_(module.position_embeddings, module.compute_position_embeddings(self.config.vision_config.grid_size))


class UMTForVideoQuestionAnswering(UMTQAPreTrainedModel, GenerationMixin):
    """Open-ended video QA: UMT video encoder, BERT question encoder with fusion layers, causal BERT answer decoder.

        forward(pixel_values, input_ids, attention_mask, labels, answers_per_question, answer_weights) -> loss
        rank_answers(pixel_values, input_ids, attention_mask, candidate_input_ids, candidate_attention_mask, k)
            -> (topk_ids, topk_probs), the official evaluation over a fixed answer list
        generate(pixel_values, input_ids, attention_mask, max_new_tokens=...) -> answer ids ([CLS] ... [SEP])

    Videos are (B, T, C, H, W), ImageNet-normalised; images are (B, 1, C, H, W).
    """

    _tied_weights_keys = {
        "text_decoder.cls.predictions.decoder.weight": "text_decoder.bert.embeddings.word_embeddings.weight",
        "text_decoder.cls.predictions.decoder.bias": "text_decoder.cls.predictions.bias",
    }

    def __init__(self, config: UMTQAConfig):
        super().__init__(config)
        vc, tc = config.vision_config, config.text_config
        self.vision_model = UMTVideoModel(vc, add_pooling_layer=False)
        self.text_model = UMTTextModel(tc, config.fusion_layer, vc.hidden_size)
        self.text_decoder = BertLMHeadModel(config.decoder_config())
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_model.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.text_model.embeddings.word_embeddings = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.text_decoder.cls.predictions.decoder

    # ---- encoders ---------------------------------------------------------------------------------------------------
    def get_video_features(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = True) -> torch.Tensor:
        """pixel_values (B, T, C, H, W) -> the final-norm video tokens (B, T·h·w, Dv), unpooled (official QA)."""
        return self.vision_model(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding).last_hidden_state

    def encode_question(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        vision_embeds: torch.Tensor,
    ) -> torch.Tensor:
        """Question ids (B, Lq) with cross-attention to every video token (B, N, Dv) -> question states (B, Lq, H)."""
        return self.text_model(
            input_ids, attention_mask, encoder_hidden_states=vision_embeds, mode="multi_modal"
        ).last_hidden_state

    def _questions(self, pixel_values, input_ids, attention_mask, question_embeds, question_attention_mask):
        """(question states (B, Lq, H), their mask (B, Lq), video tokens or None) from raw inputs or given states."""
        if question_embeds is not None:
            mask = question_attention_mask
            if mask is None:
                mask = torch.ones(question_embeds.shape[:2], dtype=torch.long, device=question_embeds.device)
            return question_embeds, mask, None
        if pixel_values is None or input_ids is None:
            raise ValueError("Give `pixel_values` and `input_ids` (the question), or `question_embeds`.")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        vision = self.get_video_features(pixel_values)
        return self.encode_question(input_ids, attention_mask, vision), attention_mask, vision

    # ---- training ---------------------------------------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        answers_per_question: torch.Tensor | list[int] | None = None,
        answer_weights: torch.Tensor | None = None,
        question_embeds: torch.Tensor | None = None,
        question_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> UMTVideoQAOutput:
        """
        pixel_values (B, T, C, H, W); input_ids, attention_mask (B, Lq): the questions.
        labels (A, La): the answers `[CLS] answer [SEP] ...` with padding -100 (`processors.video_qa.encode_answers`);
            they also serve as decoder inputs (padding -> [PAD]) unless `decoder_input_ids` is given.
        decoder_attention_mask (A, La): default labels != -100.
        answers_per_question (B,) ints summing to A: answers i belong to question b in order (default: one each).
        answer_weights (A,): each answer's frequency among its question's annotations (default: 1).
        """
        states, q_mask, vision = self._questions(
            pixel_values, input_ids, attention_mask, question_embeds, question_attention_mask
        )
        if labels is None and decoder_input_ids is None:
            return UMTVideoQAOutput(vision_embeds=vision, question_embeds=states)
        pad = self.config.text_config.pad_token_id
        if decoder_input_ids is None:
            decoder_input_ids = labels.masked_fill(labels == -100, pad)
        if decoder_attention_mask is None:
            decoder_attention_mask = (labels != -100).long() if labels is not None else (decoder_input_ids != pad).long()
        num_questions = states.shape[0]
        if answers_per_question is None:
            answers_per_question = torch.ones(num_questions, dtype=torch.long, device=states.device)
        counts = torch.as_tensor(answers_per_question, dtype=torch.long, device=states.device)
        if counts.shape != (num_questions,) or int(counts.sum()) != decoder_input_ids.shape[0]:
            raise ValueError(
                f"`answers_per_question` must hold one count per question ({num_questions}) summing to the number of "
                f"answers ({decoder_input_ids.shape[0]}); got {counts.tolist()}."
            )
        logits = self.text_decoder(
            decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=states.repeat_interleave(counts, dim=0),
            encoder_attention_mask=q_mask.repeat_interleave(counts, dim=0),
            use_cache=False,
        ).logits
        loss = per_answer = None
        if labels is not None:
            per_answer = answer_sequence_loss(logits, labels)
            if answer_weights is None:
                answer_weights = torch.ones_like(per_answer)
            loss = weighted_answer_loss(per_answer, answer_weights, num_questions)
        return UMTVideoQAOutput(
            loss=loss, answer_losses=per_answer, logits=logits, vision_embeds=vision, question_embeds=states
        )

    # ---- evaluation: the official answer-list ranking ---------------------------------------------------------------
    @torch.no_grad()
    def rank_answers(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        candidate_input_ids: torch.Tensor | None = None,
        candidate_attention_mask: torch.Tensor | None = None,
        k: int | None = None,
        question_embeds: torch.Tensor | None = None,
        question_attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank a fixed answer list for each question, exactly as the official `rank_answer`:

        1. one decoder step from `[CLS]` (the candidates' first id); keep each candidate's first-token probability
           (candidate_input_ids[:, 1]) and the top k candidates by it;
        2. re-score those k full sequences: log p(first token) + (−summed CE of the whole answer, which counts the
           first token again, as the official code does), softmax over the k, sorted.

        candidate_input_ids, candidate_attention_mask: (C, La) from `processors.video_qa.encode_answer_list`, C >= k.
        k: default `config.rank_k` (128). Returns (topk_ids (B, k) indices into the candidate list, best first;
        topk_probs (B, k) their re-ranked probabilities). The prediction is `topk_ids[:, 0]`.
        """
        if candidate_input_ids is None:
            raise ValueError("`candidate_input_ids` (the encoded answer list) is required.")
        if candidate_attention_mask is None:
            candidate_attention_mask = (candidate_input_ids != self.config.text_config.pad_token_id).long()
        k = self.config.rank_k if k is None else k
        num_candidates = candidate_input_ids.shape[0]
        if not 1 <= k <= num_candidates:
            raise ValueError(f"`k` must be in [1, number of candidates = {num_candidates}], got {k}.")
        states, q_mask, _ = self._questions(
            pixel_values, input_ids, attention_mask, question_embeds, question_attention_mask
        )
        num_questions = states.shape[0]
        start = candidate_input_ids[0, 0].repeat(num_questions, 1)
        first_logits = self.text_decoder(
            start, encoder_hidden_states=states, encoder_attention_mask=q_mask, use_cache=False
        ).logits[:, 0]
        first_probs = first_logits.softmax(dim=-1).index_select(1, candidate_input_ids[:, 1])
        topk_probs, topk_ids = first_probs.topk(k, dim=1)  # (B, k)
        ids = candidate_input_ids[topk_ids.flatten()]  # (B·k, La), question-major
        mask = candidate_attention_mask[topk_ids.flatten()]
        labels = ids.masked_fill(ids == self.config.text_config.pad_token_id, -100)
        logits = self.text_decoder(
            ids,
            attention_mask=mask,
            encoder_hidden_states=states.repeat_interleave(k, dim=0),
            encoder_attention_mask=q_mask.repeat_interleave(k, dim=0),
            use_cache=False,
        ).logits
        sequence_loss = answer_sequence_loss(logits, labels)  # (B·k,)
        log_probs = (topk_probs.reshape(-1).log() - sequence_loss).view(num_questions, k)
        probs, order = log_probs.softmax(dim=-1).topk(k, dim=1)
        return topk_ids.gather(1, order), probs

    # ---- free-form answers ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        question_embeds: torch.Tensor | None = None,
        question_attention_mask: torch.Tensor | None = None,
        **generate_kwargs,
    ) -> torch.Tensor:
        """Free-form answers: the decoder generates from `[CLS]` (config.decoder_start_token_id) until `[SEP]`
        (config.eos_token_id), cross-attending to the question states. `generate_kwargs` go to transformers'
        `GenerationMixin.generate` (max_new_tokens — default config.max_answer_length — num_beams, do_sample, ...).
        Returns (B, ≤ 1 + max_new_tokens) ids starting with [CLS]; decode with `skip_special_tokens=True`."""
        states, q_mask, _ = self._questions(
            pixel_values, input_ids, attention_mask, question_embeds, question_attention_mask
        )
        c = self.config
        start = torch.full((states.shape[0], 1), c.decoder_start_token_id, dtype=torch.long, device=states.device)
        generate_kwargs.setdefault("max_new_tokens", c.max_answer_length)
        generate_kwargs.setdefault("eos_token_id", c.eos_token_id)
        generate_kwargs.setdefault("pad_token_id", c.text_config.pad_token_id)
        # answers are a few tokens: no key/value cache (transformers' default cache for a decoder-only model has no
        # slot for the cross-attention keys/values)
        generate_kwargs.setdefault("use_cache", False)
        return self.text_decoder.generate(
            input_ids=start, encoder_hidden_states=states, encoder_attention_mask=q_mask, **generate_kwargs
        )

    # ---- building from a Stage-2 model ------------------------------------------------------------------------------
    @classmethod
    def from_retrieval_model(cls, retrieval, vision_overrides: dict | None = None,
                             **config_kwargs) -> "UMTForVideoQuestionAnswering":
        """A QA model initialised from a `UMTForVideoTextRetrieval` (an instance or a saved directory), as official
        `setup_model(has_decoder=True)`: the video encoder and the whole BERT are copied; the decoder takes the BERT's
        embeddings, its fusion layers [fusion_layer, L) as decoder layers [0, L - fusion_layer), and the MLM head.
        With different video and text widths the decoder's cross-attention keys/values cannot be copied (they read
        the question width) and start fresh. `config_kwargs` override UMTQAConfig fields; `num_frames` sets the
        video's frame count (default 12, official QA); `vision_overrides` other UMTConfig fields (e.g.
        drop_path_rate)."""
        if isinstance(retrieval, (str, os.PathLike)):
            saved = AutoConfig.from_pretrained(retrieval)
            if saved.model_type != "umt_retrieval":
                raise ValueError(
                    f"`retrieval` {str(retrieval)!r} holds a {saved.model_type!r} model; expected 'umt_retrieval'."
                )
            retrieval = AutoModel.from_pretrained(retrieval)
        rc = retrieval.config
        num_frames = config_kwargs.pop("num_frames", QA_VISION_DEFAULTS["num_frames"])
        vision = UMTConfig(**{**rc.vision_config.to_dict(), "num_frames": num_frames, "uta_num_layers": 0,
                              **(vision_overrides or {})})
        config = UMTQAConfig(
            vision_config=vision, text_config=rc.text_config, fusion_layer=rc.fusion_layer,
            decoder_start_token_id=rc.cls_token_id if rc.cls_token_id is not None else 101, **config_kwargs,
        )
        model = cls(config)
        model.vision_model.load_state_dict(
            {k: v for k, v in retrieval.vision_model.state_dict().items() if not k.startswith("pooler.")}
        )
        model.text_model.load_state_dict(retrieval.text_model.state_dict())
        fresh = model.init_decoder_from_encoder(
            retrieval.mlm_head.state_dict() if retrieval.mlm_head is not None else None
        )
        if fresh:
            logger.warning("Answer decoder weights not copied from the encoder (fresh): %s", fresh)
        return model

    def init_decoder_from_encoder(self, mlm_head_state: dict[str, torch.Tensor] | None = None) -> list[str]:
        """Copy the question encoder's embeddings and fusion layers (and the given MLM head weights) into the answer
        decoder (official `setup_model`). Returns the decoder keys left as they were (shape mismatch or missing)."""
        fusion = self.config.fusion_layer
        source = {}
        for key, value in self.text_model.state_dict().items():
            if key.startswith("embeddings."):
                source["bert." + key] = value
            elif key.startswith("encoder.layer."):
                layer, rest = key[len("encoder.layer."):].split(".", 1)
                if int(layer) >= fusion:
                    source[f"bert.encoder.layer.{int(layer) - fusion}.{rest}"] = value
        for key, value in (mlm_head_state or {}).items():
            source["cls." + key] = value
        target = self.text_decoder.state_dict()
        usable = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
        self.text_decoder.load_state_dict(usable, strict=False)
        self.text_decoder.tie_weights()
        tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
        return sorted(k for k in target if k not in usable and k not in tied)


__all__ = ["UMTForVideoQuestionAnswering", "UMTQAPreTrainedModel", "UMTVideoQAOutput"]
