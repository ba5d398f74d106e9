"""Command line of the converter: `python -m modeling_umt.convert_original_checkpoint --help`."""

from __future__ import annotations

import argparse
import sys

from .checkpoints import checkpoint_table
from .convert import convert_checkpoint, reverse_checkpoint
from .reading import SAVED_CONFIG_KEY

__all__ = ["main"]

# Settings the weights do not give; each is printed with its source, and these flags set them.
_SETTING_FLAGS = ("model_size", "num_frames", "image_size", "num_attention_heads", "text_num_attention_heads",
                  "text_pooling", "fusion_layer", "label_file")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m modeling_umt.convert_original_checkpoint",
        description="Convert an official UMT checkpoint (Stage-1 student, fine-tuned classifier, Stage-2 pre-trained "
        "or retrieval model; detected from its keys) to a transformers directory, or back with --reverse. Every "
        "setting the weights do not give is printed with its source; the flags below set them.",
    )
    p.add_argument("--list", action="store_true", help="print the table of released official checkpoints (download "
                   "address, what each is, the command that converts it) and exit")
    p.add_argument("--checkpoint", help="official .pth (or, with --reverse, a saved transformers dir); required")
    p.add_argument("--output_dir", help="directory to create (with --reverse it receives model.pth); required")
    p.add_argument("--model_size", choices=("b16", "l16"), help="checked against the shapes; sets the video heads")
    p.add_argument("--num_frames", type=int, help="frames the model is built for (default: from pos_embed, else the "
                   "family's official value: 8 Stage 1 / classifier, 4 Stage-2 pre-training, 12 retrieval)")
    p.add_argument("--image_size", type=int, help="input resolution (default: from pos_embed, else 224)")
    p.add_argument("--num_attention_heads", type=int, help="video ViT heads; required unless the width x depth is a "
                   "released size (768 x 12 -> 12, 1024 x 24 -> 16)")
    p.add_argument("--text_num_attention_heads", type=int, help="Stage 2: BERT heads; required unless the BERT is "
                   "bert-base (768 x 12) or bert-large (1024 x 24)")
    p.add_argument("--text_pooling", choices=("cls", "mean"), help="Stage 2: text pooling (default: cls, official)")
    p.add_argument("--fusion_layer", type=int, help="Stage 2: first cross-attention layer (checked against weights)")
    p.add_argument("--label_file", help="classifier: class names, one per line, or a JSON list / dict")
    p.add_argument("--tokenizer", help="Stage 2: BERT tokenizer (folder or Hub name; official: bert-base-uncased) "
                   "saved with the model as a UMTProcessor; without it the folder gets the video processor only")
    p.add_argument("--dtype", choices=("float32", "keep"), default="float32", help="float32 (default) or keep")
    p.add_argument("--model_key", default="auto", help="model | module | model|module | auto (default)")
    p.add_argument("--reverse", action="store_true", help="transformers dir -> official-layout model.pth (our config "
                   f"stored under `{SAVED_CONFIG_KEY}`, so converting it again needs no flag)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output_dir")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 on success, 1 on a checkpoint or argument it cannot handle)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        print(checkpoint_table())
        return 0
    for name in ("checkpoint", "output_dir"):
        if getattr(args, name) is None:
            parser.error(f"the following arguments are required: --{name} (or --list)")
    settings = {name: getattr(args, name) for name in _SETTING_FLAGS}
    try:
        if args.reverse:
            given = [name for name, value in {**settings, "tokenizer": args.tokenizer}.items() if value is not None]
            if given:
                raise ValueError(f"`--{given[0]}` does not apply to --reverse (the saved config is used).")
            reverse_checkpoint(args.checkpoint, args.output_dir, dtype=args.dtype, model_key=args.model_key,
                               overwrite=args.overwrite)
        else:
            convert_checkpoint(args.checkpoint, args.output_dir, dtype=args.dtype, model_key=args.model_key,
                               overwrite=args.overwrite, tokenizer=args.tokenizer, **settings)
    except ValueError as err:  # ConversionError and the configs' validation errors
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
