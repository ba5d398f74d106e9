"""Command line of the official-checkpoint converter (the code lives in `modeling_umt.conversion`):

    python -m modeling_umt.convert_original_checkpoint --checkpoint X.pth --output_dir DIR [settings]
    python -m modeling_umt.convert_original_checkpoint --reverse --checkpoint HF_DIR --output_dir DIR
    python -m modeling_umt.convert_original_checkpoint --help
"""

import sys

from .conversion.cli import main

if __name__ == "__main__":
    sys.exit(main())
