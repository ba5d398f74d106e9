"""What every training script of `training_scripts/` does the same way: read its argument dataclasses from the
command line or from one JSON/YAML file, and set up logging and the seed."""

from __future__ import annotations

import logging
import os
import sys

import transformers
from transformers import HfArgumentParser, set_seed


def parse_script_arguments(dataclass_types: tuple, argv: list[str] | None = None) -> tuple:
    """Parse `argv` (default: sys.argv[1:]) into instances of `dataclass_types`, in order.

    A single `.json` / `.yaml` / `.yml` argument is read as a file holding every argument. Also configures logging
    and, when the last dataclass is a `TrainingArguments`, seeds everything with its `seed`.
    """
    parser = HfArgumentParser(dataclass_types)
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


__all__ = ["parse_script_arguments"]
