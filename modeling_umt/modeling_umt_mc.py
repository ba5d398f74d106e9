"""Video multiple choice from a UMT Stage-2 retrieval model (official `multi_modality/tasks/retrieval_mc.py`, MSRVTT-MC).

There is no multiple-choice training: the retrieval model (VTC + VTM) scores each of a video's C candidate texts as

    score = itm_weight · softmax(itm_head(fused text))[match]  +  (1 − itm_weight) · softmax_over_options(sim / temp)

with `sim` the cosine of the video's per-frame projections and the option's text projection, averaged over frames
(official: itm_weight 0.7). The prediction is the option with the highest score.

The returned `logits` are this **probability mix** (each term lies in [0, 1]; the scores of one video do not sum to
1), not unnormalised log-odds: take their argmax, do not feed them to a softmax or a cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import MultipleChoiceModelOutput

from .modeling_umt_retrieval import UMTForVideoTextRetrieval

__all__ = ["UMTForVideoMultipleChoice", "OFFICIAL_ITM_WEIGHT"]

OFFICIAL_ITM_WEIGHT = 0.7


class UMTForVideoMultipleChoice(UMTForVideoTextRetrieval):
    """A `UMTForVideoTextRetrieval` whose forward scores C candidate texts per video (official MSRVTT-MC).

    Loads any saved Stage-2 / retrieval model (`UMTForVideoMultipleChoice.from_pretrained(stage2_dir)`, or
    `AutoModelForMultipleChoice`): the weights are the retrieval model's.
    """

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        itm_weight: float = OFFICIAL_ITM_WEIGHT,
        interpolate_pos_encoding: bool = True,
        **kwargs,
    ) -> MultipleChoiceModelOutput:
        """
        pixel_values (B, T, C, H, W); input_ids, attention_mask (B, num_choices, L): each video's candidate texts.
        itm_weight: weight of the ITM match probability (official 0.7); 1 − itm_weight goes to the similarity softmax.
        Returns MultipleChoiceModelOutput with logits (B, num_choices): the probability mix (see the module doc).
        """
        if input_ids.ndim != 3:
            raise ValueError(f"`input_ids` must be (B, num_choices, L), got {tuple(input_ids.shape)}.")
        if not 0.0 <= itm_weight <= 1.0:
            raise ValueError(f"`itm_weight` must be in [0, 1], got {itm_weight}.")
        batch, choices, length = input_ids.shape
        if pixel_values.shape[0] != batch:
            raise ValueError(f"`pixel_values` has {pixel_values.shape[0]} videos but `input_ids` {batch}.")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        self.clamp_temperature()
        video = self.get_video_features(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        flat_ids, flat_mask = input_ids.reshape(-1, length), attention_mask.reshape(-1, length)
        text = self.get_text_features(flat_ids, flat_mask)
        frames = F.normalize(video.projected_embeds, dim=-1)  # (B, T', E)
        options = F.normalize(text.projected_embeds, dim=-1).view(batch, choices, -1)  # (B, C, E)
        sim = torch.einsum("bte,bce->btc", frames, options).mean(1) / self.temp  # (B, C)
        sim_probs = sim.softmax(dim=-1)
        itm = self.get_itm_logits(
            video.last_hidden_state.repeat_interleave(choices, dim=0), text.last_hidden_state, flat_mask
        )
        match = itm.softmax(dim=-1)[:, 1].view(batch, choices)
        return MultipleChoiceModelOutput(logits=itm_weight * match + (1.0 - itm_weight) * sim_probs)
