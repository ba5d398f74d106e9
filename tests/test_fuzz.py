"""The fuzz suite: bad inputs to configs, model forwards, files, URLs and checkpoints, one case each (a table, one
pytest id per case). Every case must end as a clear error naming the problem (its message is matched) or as a
correct result; see tests/_fuzz.py for the classification and tests/fuzz_counts.py for the counts table of
docs/reliability.md. The table cases (labels, captions, paths, AVA lines) are in tests/test_fuzz_tables.py."""

from __future__ import annotations

import http.server
import io
import json
import math
import pickle
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from PIL import Image
from safetensors.torch import save_file
from transformers import BertConfig, VideoMAEConfig

from _fuzz import GOOD, Case, run_case
from _retrieval_tiny import MASK_ID, VOCAB, tiny_config, tiny_inputs
from modeling_umt import UMTConfig, UMTForPreTraining, UMTForVideoClassification, UMTForVideoTextRetrieval
from modeling_umt import UMTDetectionConfig, UMTQAConfig, UMTRetrievalConfig, UMTVideoModel
from modeling_umt.config_validation import POSITIVE, Range, check_config_fields
from modeling_umt.configuration_umt import UMT_FIELD_RANGES
from modeling_umt.configuration_umt_qa import QA_FIELD_RANGES
from modeling_umt.configuration_umt_retrieval import RETRIEVAL_FIELD_RANGES
from modeling_umt.conversion import ConversionError, convert_state_dict, load_official_checkpoint
from modeling_umt.losses import mask_tokens_for_mlm
from processors.decoding import ImageClipDecoder, VideoClipDecoder
from processors.synthetic import encode_mp4
from processors.transforms import EvalTransform, eval_views
from processors.video_io import VideoDecodeError, VideoReader, fetch_url, read_video
from processors.video_processing_umt import UMTVideoProcessor

CONFIG_ERRORS = (ValueError, TypeError, StrictDataclassError)
TINY = dict(image_size=16, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, uta_output_dim=16)  # fmt: skip


def _named(name: str, value) -> str:
    """A message naming field `name` and the value received."""
    return rf"`{re.escape(name)}`.*{re.escape(repr(value) if not isinstance(value, float) else str(value))}"


# ---- configs -----------------------------------------------------------------------------------------------------
def _bad_values(annotation: str, value_range: Range | None) -> list:
    """Wrong-type, non-finite and out-of-range values for a field annotated `annotation`."""
    optional = "None" in annotation
    if annotation.startswith("bool"):
        return ["yes", 1] + ([] if optional else [None])
    if annotation.startswith("str"):
        return [5, True]
    if annotation.startswith("int | list"):
        return ["224", 2.5, (0, 4), True]
    bad: list = ["32", True] + ([] if optional else [None])
    if annotation.startswith("int"):
        bad.append(2.5)
    else:
        bad += [float("nan"), float("inf")]
    if value_range is not None and value_range.low is not None:
        bad.append(value_range.low - 1 if not annotation.startswith("int") else int(value_range.low) - 1)
    if value_range is not None and value_range.high is not None:
        bad.append(value_range.high + 0.5)
    return bad


def _config_cases(cls, ranges: dict, base: dict, category_name: str) -> list[Case]:
    cases = []
    for name, annotation in cls.__annotations__.items():
        if name.startswith("_") or name in ("vision_config", "text_config", "model_type", "sub_configs_defaults"):
            continue
        for value in _bad_values(str(annotation), ranges.get(name)):
            label = re.sub(r"[^0-9A-Za-z.+-]+", "_", repr(value)).strip("_")
            cases.append(Case("configs", f"{category_name}.{name}={label}",
                              lambda env, n=name, v=value: cls(**{**base, n: v}),
                              error=_named(name, value), raises=CONFIG_ERRORS))  # fmt: skip
    return cases


def _from_pretrained_case(name: str, edit, error: str | None, cls=UMTConfig, check=None) -> Case:
    def call(env):
        folder = env.tmp / f"cfg_{name}"
        folder.mkdir()
        config = UMTConfig(**TINY).to_dict()
        edit(config)
        (folder / "config.json").write_text(json.dumps(config))
        return cls.from_pretrained(folder)

    return Case("configs", f"from_pretrained.{name}", call, error=error, raises=CONFIG_ERRORS, check=check)


def _with(key, value):
    return lambda config: config.__setitem__(key, value)


def _videomae_dir(env) -> Path:
    folder = env.tmp / "videomae"
    if not folder.exists():
        VideoMAEConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(folder)
    return folder


CONFIG_CASES = [
    *_config_cases(UMTConfig, UMT_FIELD_RANGES, TINY, "UMTConfig"),
    *_config_cases(UMTRetrievalConfig, RETRIEVAL_FIELD_RANGES, {}, "UMTRetrievalConfig"),
    Case("configs", "UMTConfig.pooling=max", lambda env: UMTConfig(**TINY, pooling="max"), error=_named("pooling", "max")),
    Case("configs", "UMTConfig.heads_not_dividing", lambda env: UMTConfig(**{**TINY, "num_attention_heads": 5}),
         error=r"`hidden_size` \(32\) must be divisible by `num_attention_heads` \(5\)", raises=CONFIG_ERRORS),
    Case("configs", "UMTConfig.image_not_divisible", lambda env: UMTConfig(**{**TINY, "image_size": 20}),
         error=r"`image_size` \(20, 20\) must be divisible by `patch_size`", raises=CONFIG_ERRORS),
    Case("configs", "UMTConfig.uta_layers_too_many", lambda env: UMTConfig(**TINY, uta_num_layers=3),
         error=r"`uta_num_layers` \(3\) must be between 0", raises=CONFIG_ERRORS),
    Case("configs", "UMTConfig.uta_interval_too_wide", lambda env: UMTConfig(**TINY, uta_num_layers=2, uta_layer_interval=2),
         error=r"`uta_layer_interval` \(2\) x `uta_num_layers` \(2\) reaches below layer 0", raises=CONFIG_ERRORS),
    Case("configs", "UMTForPreTraining.uta_num_layers=0", lambda env: UMTForPreTraining(UMTConfig(**TINY, uta_num_layers=0)),
         error=r"`uta_num_layers` must be >= 1, got 0"),
    Case("configs", "UMTRetrievalConfig.fusion_past_depth",
         lambda env: UMTRetrievalConfig(text_config=BertConfig(num_hidden_layers=2), fusion_layer=3),
         error=r"`fusion_layer` \(3\) must be between 0 and", raises=CONFIG_ERRORS),
    Case("configs", "UMTRetrievalConfig.temperature_outside", lambda env: UMTRetrievalConfig(temperature_init=0.9),
         error=r"`temperature_init` \(0.9\) must lie in", raises=CONFIG_ERRORS),
    Case("configs", "UMTRetrievalConfig.mlm_probability=1", lambda env: UMTRetrievalConfig(mlm_probability=1.0),
         error=r"`mlm_probability` must be in \(0, 1\), got 1.0", raises=CONFIG_ERRORS),
    Case("configs", "UMTRetrievalConfig.text_pooling=max", lambda env: UMTRetrievalConfig(text_pooling="max"),
         error=r"`text_pooling` must be 'cls' or 'mean', got 'max'", raises=CONFIG_ERRORS),
    Case("configs", "UMTRetrievalConfig.vision_config=int", lambda env: UMTRetrievalConfig(vision_config=3),
         error=r"vision_config", raises=CONFIG_ERRORS + (AttributeError,)),
    *_config_cases(UMTQAConfig, QA_FIELD_RANGES, {}, "UMTQAConfig"),
    *_config_cases(UMTDetectionConfig, {}, TINY, "UMTDetectionConfig"),  # its own field; the rest are UMTConfig's
    Case("configs", "UMTQAConfig.fusion_at_depth", lambda env: UMTQAConfig(text_config=BertConfig(num_hidden_layers=2), fusion_layer=2),
         error=r"`fusion_layer` \(2\) must be in \[0, `text_config.num_hidden_layers` \(2\)\)", raises=CONFIG_ERRORS),
    Case("configs", "UMTQAConfig.max_answer_length=1", lambda env: UMTQAConfig(max_answer_length=1),
         error=r"`max_answer_length` must be >= 2 \(\[CLS\] \+ one token\), got 1", raises=CONFIG_ERRORS),
    Case("configs", "UMTQAConfig.text_config_decoder", lambda env: UMTQAConfig(text_config=BertConfig(is_decoder=True)),
         error=r"`text_config` must be a plain BERT encoder", raises=CONFIG_ERRORS),
    Case("configs", "UMTQAConfig.vision_config=int", lambda env: UMTQAConfig(vision_config=3), error=r"vision_config",
         raises=CONFIG_ERRORS),
    Case("configs", "UMTDetectionConfig.num_labels=0", lambda env: UMTDetectionConfig(**TINY, num_labels=0),
         error=r"`num_labels` \(the actions a detector scores\) must be >= 1, got 0", raises=CONFIG_ERRORS),
    *[Case("configs", f"{cls.__name__}.{name}", lambda env, cls=cls, base=base, kw=kw: cls(**base, **kw), error=error,
           raises=CONFIG_ERRORS)
      for cls, base in ((UMTConfig, TINY), (UMTDetectionConfig, TINY), (UMTQAConfig, {}), (UMTRetrievalConfig, {}))
      for name, kw, error in (
          ("num_labels_vs_id2label", dict(num_labels=3, id2label={0: "a"}), r"`num_labels` \(3\) does not match `id2label`, which names 1"),
          ("num_labels=-1", dict(num_labels=-1), r"`num_labels` must be >= 0, got -1"),
          ("num_labels_str", dict(num_labels="3"), r"`num_labels` must be int, got '3'"),
          ("id2label_gap", dict(id2label={0: "a", 2: "b"}), r"`id2label` keys must be the class ids 0..1 without gaps.*\[0, 2\]"),
          ("id2label_key_name", dict(id2label={"a": "b"}), r"`id2label` keys must be class ids.*'a'"),
      )],
    Case("configs", "UMTQAConfig.ok_default", lambda env: UMTQAConfig(),
         check=lambda c: c.decoder_config().num_hidden_layers == 3 and c.vision_config.num_frames == 12),
    Case("configs", "UMTDetectionConfig.ok_labels", lambda env: UMTDetectionConfig(**TINY, num_labels=2, id2label={"0": "a", "1": "b"}),
         check=lambda c: c.id2label == {0: "a", 1: "b"}),
    _from_pretrained_case("as_qa_config", lambda c: None, r"model_type 'umt'.*UMTQAConfig", cls=UMTQAConfig),
    _from_pretrained_case("num_labels_saved_mismatch", lambda c: c.update(num_labels=3), r"`num_labels` \(3\) does not match"),
    _from_pretrained_case("new_head_num_labels", lambda c: None, None,
                          cls=SimpleNamespace(from_pretrained=lambda folder: UMTConfig.from_pretrained(folder, num_labels=5)),
                          check=lambda c: c.id2label == {i: f"LABEL_{i}" for i in range(5)}),
    Case("configs", "mlm.mask_token_id_out_of_vocab", lambda env: mask_tokens_for_mlm(torch.ones(2, 4, dtype=torch.long), 103, 99),
         error=r"`mask_token_id` \(103\) must be a token id of the vocabulary \[0, 99\)"),
    Case("configs", "check_config_fields.unknown_range", lambda env: check_config_fields(UMTConfig(**TINY), {"hiden_size": POSITIVE}),
         error=r"hiden_size", raises=KeyError),
    # good values stay accepted
    Case("configs", "UMTConfig.ok_int_dropout", lambda env: UMTConfig(**TINY, hidden_dropout_prob=0),
         check=lambda c: c.hidden_dropout_prob == 0),
    Case("configs", "UMTConfig.ok_pair_image", lambda env: UMTConfig(**{**TINY, "image_size": [16, 24]}),
         check=lambda c: c.image_hw == (16, 24)),
    Case("configs", "UMTConfig.ok_no_layers", lambda env: UMTConfig(**{**TINY, "num_hidden_layers": 0}),
         check=lambda c: c.num_uta_layers == 0),
    Case("configs", "UMTConfig.ok_uta_none", lambda env: UMTConfig(**TINY, uta_num_layers=None),
         check=lambda c: c.num_uta_layers == 2),
    Case("configs", "UMTRetrievalConfig.ok_tiny", lambda env: tiny_config(), check=lambda c: c.mask_token_id == MASK_ID),
    _from_pretrained_case("layer_norm_eps_nan", _with("layer_norm_eps", float("nan")), _named("layer_norm_eps", float("nan"))),
    _from_pretrained_case("layer_norm_eps_str", _with("layer_norm_eps", "x"), _named("layer_norm_eps", "x")),
    _from_pretrained_case("hidden_size_str", _with("hidden_size", "32"), _named("hidden_size", "32")),
    _from_pretrained_case("qkv_bias_str", _with("qkv_bias", "yes"), _named("qkv_bias", "yes")),
    _from_pretrained_case("hidden_size_zero", _with("hidden_size", 0), _named("hidden_size", 0)),
    _from_pretrained_case("head_init_nan", _with("head_init_scale", float("nan")), _named("head_init_scale", float("nan"))),
    _from_pretrained_case("uta_interval_zero", _with("uta_layer_interval", 0), _named("uta_layer_interval", 0)),
    _from_pretrained_case("model_type_videomae", _with("model_type", "videomae"), r"model_type 'videomae'.*UMTConfig"),
    _from_pretrained_case("as_retrieval_config", lambda c: None, r"model_type 'umt'.*UMTRetrievalConfig", cls=UMTRetrievalConfig),
    _from_pretrained_case("unknown_key_loads", _with("hiden_size", 3), None, check=lambda c: c.hidden_size == 32),
    _from_pretrained_case("ok", lambda c: None, None, check=lambda c: c.hidden_size == 32),
    Case("configs", "from_pretrained.videomae_dir_as_model", lambda env: UMTVideoModel.from_pretrained(_videomae_dir(env)),
         error=r"model_type 'videomae'.*load it with the class made for 'videomae'"),
    Case("configs", "from_pretrained.videomae_dir_as_classifier",
         lambda env: UMTForVideoClassification.from_pretrained(_videomae_dir(env)), error=r"model_type 'videomae'"),
]  # fmt: skip


# ---- model inputs --------------------------------------------------------------------------------------------------
def _video_model():
    torch.manual_seed(0)
    return UMTVideoModel(UMTConfig(**TINY)).eval()


def _forward(x, **kwargs):
    def call(env):
        with torch.no_grad():
            return env.video_model(x if not callable(x) else x(), **kwargs)

    return call


def _mask(fill=False, dtype=torch.bool, shape=(2, 16)):
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[:, :8] = True
    if fill:
        mask[:] = True
    return mask.to(dtype)


def _retrieval_text(input_ids, attention_mask):
    def call(env):
        with torch.no_grad():
            return env.retrieval.get_text_features(input_ids, attention_mask)

    return call


VIDEO = torch.randn(2, 4, 3, 16, 16)
IDS, TEXT_MASK = tiny_inputs()[1:]
MODEL_CASES = [
    Case("model inputs", "list_pixels", _forward(VIDEO.tolist()), error=r"`pixel_values` must be a torch.Tensor.*got list"),
    Case("model inputs", "numpy_pixels", _forward(VIDEO.numpy()), error=r"`pixel_values` must be a torch.Tensor.*ndarray"),
    Case("model inputs", "none_pixels", _forward(None), error=r"`pixel_values` must be a torch.Tensor.*NoneType"),
    Case("model inputs", "int_pixels", _forward(torch.zeros(2, 4, 3, 16, 16, dtype=torch.uint8)),
         error=r"`pixel_values` must be a floating-point tensor.*uint8"),
    Case("model inputs", "empty_batch", _forward(torch.zeros(0, 4, 3, 16, 16)), error=r"at least one clip.*\(0, 4, 3, 16, 16\)"),
    Case("model inputs", "zero_frames", _forward(torch.zeros(2, 0, 3, 16, 16)), error=r"at least one clip of at least one frame"),
    Case("model inputs", "four_dims", _forward(torch.zeros(4, 3, 16, 16)), error=r"`pixel_values` must have shape \(batch, frames, 3"),
    Case("model inputs", "one_channel", _forward(torch.zeros(2, 4, 1, 16, 16)), error=r"`pixel_values` must have shape"),
    Case("model inputs", "wrong_size", _forward(torch.zeros(2, 4, 3, 24, 24)), error=r"24"),
    Case("model inputs", "float_mask", _forward(VIDEO, bool_masked_pos=_mask(dtype=torch.float32)),
         error=r"`bool_masked_pos` must be a bool tensor.*float32"),
    Case("model inputs", "int_mask", _forward(VIDEO, bool_masked_pos=_mask(dtype=torch.int64)),
         error=r"`bool_masked_pos` must be a bool tensor.*int64"),
    Case("model inputs", "list_mask", _forward(VIDEO, bool_masked_pos=[[True] * 16] * 2),
         error=r"`bool_masked_pos` must be a bool torch.Tensor.*list"),
    Case("model inputs", "all_masked", _forward(VIDEO, bool_masked_pos=_mask(fill=True)),
         error=r"`bool_masked_pos` drops every token of sample 0"),
    Case("model inputs", "mask_wrong_shape", _forward(VIDEO, bool_masked_pos=_mask(shape=(2, 15))),
         error=r"`bool_masked_pos` must have shape \(batch, num_tokens\) = \(2, 16\)"),
    Case("model inputs", "mask_unequal", _forward(VIDEO, bool_masked_pos=torch.tensor([[True] * 8 + [False] * 8, [True] * 7 + [False] * 9])),
         error=r"`bool_masked_pos` must mask the same number of tokens"),
    Case("model inputs", "ok_video", _forward(VIDEO), check=lambda out: out.last_hidden_state.shape == (2, 16, 32)),
    Case("model inputs", "ok_masked", _forward(VIDEO, bool_masked_pos=_mask()),
         check=lambda out: out.last_hidden_state.shape == (2, 8, 32) and torch.isfinite(out.last_hidden_state).all()),
    Case("model inputs", "ok_interpolated", _forward(torch.randn(1, 4, 3, 24, 24), interpolate_pos_encoding=True),
         check=lambda out: out.last_hidden_state.shape == (1, 36, 32)),
    Case("model inputs", "classifier_list", lambda env: UMTForVideoClassification(UMTConfig(**TINY, num_labels=3))([1, 2]),
         error=r"`pixel_values` must be a torch.Tensor"),
    Case("model inputs", "pretraining_empty", lambda env: UMTForPreTraining(UMTConfig(**TINY, uta_num_layers=1))(torch.zeros(0, 4, 3, 16, 16)),
         error=r"at least one clip"),
    Case("model inputs", "text_float_ids", _retrieval_text(IDS.float(), TEXT_MASK), error=r"`input_ids` must be an integer tensor.*float32"),
    Case("model inputs", "text_list_ids", _retrieval_text(IDS.tolist(), TEXT_MASK), error=r"`input_ids` must be an integer torch.Tensor.*list"),
    Case("model inputs", "text_1d_ids", _retrieval_text(IDS[0], TEXT_MASK[0]), error=r"`input_ids` must be \(batch, length\)"),
    Case("model inputs", "text_empty_batch", _retrieval_text(IDS[:0], TEXT_MASK[:0]), error=r"`input_ids` must be \(batch, length\).*\(0, 7\)"),
    Case("model inputs", "text_mask_all_zero", _retrieval_text(IDS, torch.zeros_like(TEXT_MASK)), error=r"`attention_mask` masks every token of row 0"),
    Case("model inputs", "text_mask_shape", _retrieval_text(IDS, TEXT_MASK[:, :5]), error=r"`attention_mask` must have the shape of `input_ids` \(3, 7\)"),
    Case("model inputs", "text_mask_float", _retrieval_text(IDS, TEXT_MASK.float()), error=r"`attention_mask` must be bool or integer.*float32"),
    Case("model inputs", "text_mask_list", _retrieval_text(IDS, TEXT_MASK.tolist()), error=r"`attention_mask` must be a torch.Tensor.*list"),
    Case("model inputs", "ok_text", _retrieval_text(IDS, TEXT_MASK), check=lambda out: out.pooler_output.shape == (3, 16)),
    Case("model inputs", "ok_text_bool_mask", _retrieval_text(IDS, TEXT_MASK.bool()), check=lambda out: out.pooler_output.shape == (3, 16)),
]  # fmt: skip


# ---- files ---------------------------------------------------------------------------------------------------------
def _read(name, backend="auto", **kwargs):
    return lambda env: read_video(env.files[name], [0], backend=backend, **kwargs)[0]


def _views(frames, **kwargs):
    return lambda env: eval_views(frames, **kwargs)


FILE_CASES = [
    *[Case("files", f"{name}.{backend}", _read(name, backend), error=rf"cannot decode video .*{re.escape(name)}.*(?:{why})",
           raises=VideoDecodeError)
      for name, why in (("image.png", "still image|Failed"), ("png_renamed.mp4", "still image|Failed"),
                        ("photo.jpg", "still image|Failed"), ("text.mp4", "Invalid data|Error reading|invalid"),
                        ("random.mp4", "Invalid data|Error reading|invalid"), ("truncated.mp4", "decord|pyav"),
                        ("empty.mp4", "empty"), ("missing.mp4", "no such file"), ("folder.mp4", "directory"))
      for backend in ("auto", "decord", "pyav")],
    Case("files", "png_renamed.mp4.pyav_names_image", _read("png_renamed.mp4", "pyav"), error=r"png_renamed.mp4.*still image \(png\)",
         raises=VideoDecodeError),
    Case("files", "ok_clip.auto", _read("clip.mp4"), check=lambda f: f.shape == (1, 3, 32, 48)),
    Case("files", "ok_clip.pyav", _read("clip.mp4", "pyav"), check=lambda f: f.shape == (1, 3, 32, 48)),
    Case("files", "ok_image_as_frame", lambda env: ImageClipDecoder(EvalTransform(16)).decode(env.files["image.png"]),
         check=lambda x: x.shape == (1, 3, 16, 16)),
    Case("files", "ok_renamed_png_as_frame", lambda env: ImageClipDecoder(EvalTransform(16)).decode(env.files["png_renamed.mp4"]),
         check=lambda x: x.shape == (1, 3, 16, 16)),
    Case("files", "image_decoder_on_text", lambda env: ImageClipDecoder(EvalTransform(16)).decode(env.files["text.mp4"]),
         error=r"text.mp4.*cannot identify image", raises=VideoDecodeError),
    Case("files", "empty_bytes", lambda env: read_video(b""), error=r"empty", raises=VideoDecodeError),
    Case("files", "junk_bytes", lambda env: read_video(b"\x00" * 100), error=r"<100 bytes>", raises=VideoDecodeError),
    Case("files", "int_source", lambda env: read_video(5), error=r"source must be a path.*got int"),
    Case("files", "text_mode_file", lambda env: read_video(io.StringIO("abc")), error=r"binary mode"),
    Case("files", "frames_3d", lambda env: read_video(np.zeros((4, 8, 8), np.uint8)), error=r"frames"),
    Case("files", "index_out_of_range", lambda env: read_video(env.files["clip.mp4"], [99]), error=r"indices must lie in \[0, 4\).*99"),
    Case("files", "no_indices", lambda env: read_video(env.files["clip.mp4"], []), error=r"indices must name at least one frame"),
    Case("files", "bad_backend", lambda env: VideoReader(env.files["clip.mp4"], backend="ffmpeg"), error=r"backend must be one of.*'ffmpeg'"),
    Case("files", "record_without_video", lambda env: VideoClipDecoder(2).read({"path": None, "bytes": None}),
         error=r"neither bytes nor a path", raises=VideoDecodeError),
    Case("files", "processor_16000x2", lambda env: UMTVideoProcessor().views(torch.zeros(8, 3, 2, 16000, dtype=torch.uint8)),
         check=lambda v: v.shape == (1, 8, 3, 224, 224)),
    Case("files", "processor_2x16000_3crops", lambda env: UMTVideoProcessor().views(torch.zeros(8, 3, 16000, 2, dtype=torch.uint8), 1, 3),
         check=lambda v: v.shape == (3, 8, 3, 224, 224)),
    Case("files", "processor_1x1", lambda env: UMTVideoProcessor().views(torch.full((8, 3, 1, 1), 255, dtype=torch.uint8)),
         check=lambda v: v.shape == (1, 8, 3, 224, 224) and torch.isfinite(v).all()),
    Case("files", "views_zero_width", _views(torch.zeros(2, 3, 8, 0, dtype=torch.uint8), resize=8, crop_size=(8, 8)),
         error=r"height and width >= 1, got \(8, 0\)"),
    Case("files", "views_whole_huge", _views(torch.zeros(8, 3, 2, 16000, dtype=torch.uint8), resize=224, crop_size=None),
         error=r"would take .* GiB.*give a crop_size"),
    Case("files", "views_3d", _views(torch.zeros(3, 8, 8, dtype=torch.uint8), resize=8, crop_size=(8, 8)), error=r"video must be a torch tensor \(T, C, H, W\)"),
    Case("files", "views_crop_too_big", _views(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), resize=None, crop_size=(16, 16)),
         error=r"crop size \(16, 16\) is larger than the resized frame \(8, 8\)"),
    Case("files", "views_clips_not_dividing", _views(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), resize=8, crop_size=(8, 8), num_temporal_clips=2),
         error=r"video has 3 frames, not a multiple of num_temporal_clips=2"),
]  # fmt: skip


# ---- URLs ----------------------------------------------------------------------------------------------------------
class _Server(http.server.BaseHTTPRequestHandler):
    payload = b""

    def do_GET(self):
        if self.path == "/trickle.mp4":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.payload)))
            self.end_headers()
            for byte in self.payload[:200]:
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
        elif self.path == "/silent.mp4":
            time.sleep(4)
        elif self.path == "/big.mp4":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(self.payload * 4)
        elif self.path == "/error.mp4":
            self.send_error(503)
        elif self.path == "/clip.mp4":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.payload)))
            self.end_headers()
            self.wfile.write(self.payload)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


def _refusing_url() -> str:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/clip.mp4"


def _timed(call, most: float):
    """`call(env)`, refused as a hang when it returns (or raises) after `most` seconds."""

    def timed(env):
        start = time.monotonic()
        try:
            return call(env)
        finally:
            if time.monotonic() - start > most:
                raise TimeoutError(f"took {time.monotonic() - start:.1f} s, over {most} s")

    return timed


def _decode_url(path: str, **options):
    return lambda env: VideoClipDecoder(2, **options).read(f"{env.url}{path}")


URL_CASES = [
    Case("urls", "trickle.fetch", _timed(lambda env: fetch_url(f"{env.url}/trickle.mp4", timeout=5, deadline=1.0), 3),
         error=r"trickle.mp4.*within the 1 s deadline", raises=VideoDecodeError),
    Case("urls", "trickle.decoder", _timed(_decode_url("/trickle.mp4", url_timeout=5, url_deadline=1.0), 3),
         error=r"trickle.mp4.*within the 1 s deadline", raises=VideoDecodeError),
    Case("urls", "trickle.reader", _timed(lambda env: VideoReader(f"{env.url}/trickle.mp4", deadline=1.0), 3),
         error=r"trickle.mp4.*deadline", raises=VideoDecodeError),
    Case("urls", "silent.fetch", _timed(lambda env: fetch_url(f"{env.url}/silent.mp4", timeout=0.5, retries=3, deadline=1.0), 3),
         error=r"silent.mp4.*download failed", raises=VideoDecodeError),
    Case("urls", "silent.decoder", _timed(_decode_url("/silent.mp4", url_timeout=0.5, url_retries=2, url_deadline=1.0), 3),
         error=r"silent.mp4.*download failed", raises=VideoDecodeError),
    Case("urls", "refusing.fetch", _timed(lambda env: fetch_url(_refusing_url(), retries=2, deadline=1.2), 3),
         error=r"download failed.*(refused|Connection)", raises=VideoDecodeError),
    Case("urls", "refusing.decoder", _timed(lambda env: VideoClipDecoder(2, url_retries=1, url_deadline=2).read(_refusing_url()), 3),
         error=r"download failed", raises=VideoDecodeError),
    Case("urls", "not_found", _timed(lambda env: fetch_url(f"{env.url}/missing.mp4", retries=3), 2),
         error=r"missing.mp4.*HTTP 404", raises=VideoDecodeError),
    Case("urls", "server_error_retried", _timed(lambda env: fetch_url(f"{env.url}/error.mp4", retries=1, deadline=5), 4),
         error=r"error.mp4.*HTTP 503", raises=VideoDecodeError),
    Case("urls", "announced_too_big", lambda env: fetch_url(f"{env.url}/clip.mp4", max_bytes=100), error=r"over max_bytes=100",
         raises=VideoDecodeError),
    Case("urls", "unannounced_too_big", lambda env: _decode_url("/big.mp4", url_max_bytes=1000)(env),
         error=r"big.mp4.*passed max_bytes=1000", raises=VideoDecodeError),
    Case("urls", "bad_deadline", lambda env: fetch_url(f"{env.url}/clip.mp4", deadline=float("nan")),
         error=r"deadline must be a positive finite number, got nan"),
    Case("urls", "bad_retries", lambda env: fetch_url(f"{env.url}/clip.mp4", retries=-1), error=r"retries must be an integer >= 0, got -1"),
    Case("urls", "bad_max_bytes", lambda env: fetch_url(f"{env.url}/clip.mp4", max_bytes=0), error=r"max_bytes must be a positive"),
    Case("urls", "ok_clip", lambda env: read_video(f"{env.url}/clip.mp4", [1])[0], check=lambda f: f.shape == (1, 3, 32, 48)),
    Case("urls", "ok_decoder", _decode_url("/clip.mp4"), check=lambda f: f.shape == (2, 3, 32, 48)),
]  # fmt: skip


# ---- checkpoints ---------------------------------------------------------------------------------------------------
W, MLP, DEPTH = 32, 64, 2


def _official_sd(seed: int = 0) -> dict:
    """A tiny official fine-tuned classifier state dict (width 32, 2 blocks, patch 16, 5 classes)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    sd = {"patch_embed.proj.weight": r(W, 3, 1, 16, 16), "patch_embed.proj.bias": r(W)}
    for i in range(DEPTH):
        p = f"blocks.{i}."
        sd.update({p + "norm1.weight": r(W), p + "norm1.bias": r(W), p + "attn.qkv.weight": r(3 * W, W),
                   p + "attn.q_bias": r(W), p + "attn.v_bias": r(W), p + "attn.proj.weight": r(W, W),
                   p + "attn.proj.bias": r(W), p + "norm2.weight": r(W), p + "norm2.bias": r(W),
                   p + "mlp.fc1.weight": r(MLP, W), p + "mlp.fc1.bias": r(MLP), p + "mlp.fc2.weight": r(W, MLP),
                   p + "mlp.fc2.bias": r(W)})  # fmt: skip
    sd.update({"fc_norm.weight": r(W), "fc_norm.bias": r(W), "head.weight": r(5, W), "head.bias": r(5)})
    return sd


def _convert(edit):
    def call(env):
        sd = _official_sd()
        edit(sd)
        return convert_state_dict(sd, num_frames=2, image_size=32, num_attention_heads=4)

    return call


def _set(key, value):
    return lambda sd: sd.__setitem__(key, value(sd[key]) if callable(value) else value)


def _grow_first(t: torch.Tensor) -> torch.Tensor:
    return torch.randn(t.shape[0] + 1, *t.shape[1:])


def _grow_last(t: torch.Tensor) -> torch.Tensor:  # head.weight's rows give the class count; its width is checked
    return torch.randn(*t.shape[:-1], t.shape[-1] + 1)


def _poke(key, index, value):
    def edit(sd):
        sd[key] = sd[key].clone()
        sd[key].view(-1)[index] = value

    return edit


class _Evil:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-umt-fuzz",))


def _pickle_file(env, obj, name):
    path = env.tmp / name
    if any(isinstance(v, torch.Tensor) for v in obj.get("model", {}).values()):
        torch.save(obj, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(obj, f)
    return path


def _saved_model(env, name: str, edit=None) -> Path:
    folder = env.tmp / f"model_{name}"
    UMTVideoModel(UMTConfig(**TINY)).save_pretrained(folder)
    if edit is not None:
        edit(folder)
    return folder


def _truncate(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])


def _nan_weights(folder: Path) -> None:
    state = {k: v for k, v in UMTVideoModel(UMTConfig(**TINY)).state_dict().items()}
    state["embeddings.patch_embeddings.projection.bias"] = torch.full_like(state["embeddings.patch_embeddings.projection.bias"], math.nan)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


CHECKPOINT_CASES = [
    *[Case("checkpoints", f"shape.{key}", _convert(_set(key, _grow_last if key == "head.weight" else _grow_first)),
           error=rf"unexpected shapes: {re.escape(key)} \[", raises=ConversionError)
      for key in ("blocks.0.mlp.fc1.weight", "blocks.1.mlp.fc1.weight", "blocks.0.mlp.fc2.weight", "blocks.1.attn.qkv.weight",
                  "blocks.0.attn.proj.weight", "blocks.0.norm1.weight", "blocks.1.norm2.bias", "head.weight", "fc_norm.weight",
                  "blocks.0.attn.q_bias")],
    *[Case("checkpoints", f"nan.{key}", _convert(_poke(key, 3, math.nan)), error=rf"`{re.escape(key)}` holds 1 non-finite",
           raises=ConversionError) for key in ("blocks.0.mlp.fc1.bias", "head.weight", "patch_embed.proj.weight")],
    *[Case("checkpoints", f"inf.{key}", _convert(_poke(key, 0, math.inf)), error=rf"`{re.escape(key)}` holds 1 non-finite",
           raises=ConversionError) for key in ("blocks.1.attn.v_bias", "fc_norm.bias")],
    *[Case("checkpoints", f"dtype.{dtype}", _convert(_set("blocks.0.mlp.fc1.bias", lambda t, d=dtype: t.to(getattr(torch, d)))),
           error=rf"`blocks.0.mlp.fc1.bias` has dtype torch.{dtype}; a weight must be a floating-point", raises=ConversionError)
      for dtype in ("int64", "int32", "uint8", "bool")],
    Case("checkpoints", "unknown_key", _convert(_set("blocks.0.mlp.fc3.weight", torch.zeros(2))), error=r"unknown keys.*fc3",
         raises=ConversionError),
    Case("checkpoints", "missing_key", _convert(lambda sd: sd.pop("blocks.1.mlp.fc2.bias")), error=r"missing keys.*blocks.1.mlp.fc2.bias",
         raises=ConversionError),
    Case("checkpoints", "patch_not_square", _convert(_set("patch_embed.proj.weight", torch.zeros(W, 3, 1, 16, 15))),
         error=r"`patch_embed.proj.weight` must be a \[C, 3, tubelet, p, p\] tensor, got \[32, 3, 1, 16, 15\]", raises=ConversionError),
    Case("checkpoints", "empty_state_dict", lambda env: convert_state_dict({}), error=r".", raises=ConversionError),
    Case("checkpoints", "ok_convert", _convert(lambda sd: None), check=lambda out: out[0].hidden_size == W and len(out[1]) > 20),
    Case("checkpoints", "ok_half_weights", _convert(lambda sd: sd.update({k: v.half() for k, v in sd.items()})),
         check=lambda out: next(iter(out[1].values())).dtype == torch.float16),
    Case("checkpoints", "malicious_pickle", lambda env: load_official_checkpoint(_pickle_file(env, {"model": {"x": _Evil()}}, "evil.pth")),
         error=r"evil.pth.*shutil.*rmtree|rmtree", raises=ConversionError),
    Case("checkpoints", "not_a_checkpoint", lambda env: load_official_checkpoint(env.files["text.mp4"]),
         error=r"Could not read .*text.mp4", raises=ConversionError),
    Case("checkpoints", "missing_checkpoint", lambda env: load_official_checkpoint(env.tmp / "nope.pth"),
         error=r"`--checkpoint` .*nope.pth.* is not a file", raises=ConversionError),
    Case("checkpoints", "ok_pickle_state_dict", lambda env: load_official_checkpoint(_pickle_file(env, {"model": _official_sd()}, "ok.pth")),
         check=lambda out: "head.weight" in out[0]),
    Case("checkpoints", "from_pretrained.truncated_weights", lambda env: UMTVideoModel.from_pretrained(_saved_model(env, "cut", _truncate)),
         error=r"(?i)header|deserializ|incomplete|safetensors"),
    Case("checkpoints", "from_pretrained.no_weights",
         lambda env: UMTVideoModel.from_pretrained(_saved_model(env, "none", lambda f: (f / "model.safetensors").unlink())),
         error=r"model.safetensors|pytorch_model.bin|no file named", raises=OSError),
    Case("checkpoints", "from_pretrained.ok", lambda env: UMTVideoModel.from_pretrained(_saved_model(env, "ok")),
         check=lambda m: m.config.hidden_size == 32),
]  # fmt: skip

CASES = CONFIG_CASES + MODEL_CASES + FILE_CASES + URL_CASES + CHECKPOINT_CASES


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    files = {}
    rng = np.random.default_rng(0)
    encode_mp4(rng.integers(0, 255, (4, 32, 48, 3), dtype=np.uint8), tmp / "clip.mp4")
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp / "image.png")
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp / "photo.jpg")
    shutil.copy(tmp / "image.png", tmp / "png_renamed.mp4")
    (tmp / "text.mp4").write_text("not a video\n" * 50)
    (tmp / "random.mp4").write_bytes(rng.integers(0, 255, 4096, dtype=np.uint8).tobytes())
    (tmp / "truncated.mp4").write_bytes((tmp / "clip.mp4").read_bytes()[:300])
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "folder.mp4").mkdir()
    for name in ("clip.mp4", "image.png", "photo.jpg", "png_renamed.mp4", "text.mp4", "random.mp4", "truncated.mp4",
                 "empty.mp4", "folder.mp4", "missing.mp4"):
        files[name] = str(tmp / name)
    _Server.payload = (tmp / "clip.mp4").read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    torch.manual_seed(0)
    yield SimpleNamespace(tmp=tmp, files=files, url=f"http://127.0.0.1:{server.server_address[1]}",
                          video_model=_video_model(), retrieval=UMTForVideoTextRetrieval(tiny_config()).eval())
    server.shutdown()
    server.server_close()


def test_the_suite_has_no_duplicate_ids():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    assert VOCAB > MASK_ID


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_fuzz_case(case, env, record_property):
    outcome, detail = run_case(case, env)
    record_property("fuzz_category", case.category)
    record_property("fuzz_outcome", outcome)
    assert outcome in GOOD and outcome == case.expects, f"{outcome}: {detail}"
