"""The official checkpoint table: docs/checkpoints.md and the converter's `--list` print the one data table
(`modeling_umt.conversion.checkpoints.OFFICIAL_CHECKPOINTS`), which covers every released family."""

from __future__ import annotations

import contextlib
import io
import re
from collections import Counter
from pathlib import Path

from modeling_umt.conversion import FAMILIES
from modeling_umt.conversion.checkpoints import OFFICIAL_CHECKPOINTS, checkpoint_table
from modeling_umt.conversion.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "checkpoints.md"


def _list_output() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--list"]) == 0
    return out.getvalue()


def test_doc_table_and_list_are_the_one_table():
    text = DOC.read_text()
    doc_table = re.search(r"<!-- checkpoint-table:start -->\n(.*)\n<!-- checkpoint-table:end -->", text, re.S).group(1)
    assert doc_table.strip() == checkpoint_table().strip() == _list_output().strip()


def test_table_covers_every_released_kind():
    families = Counter(row.family for row in OFFICIAL_CHECKPOINTS)
    assert families == {"stage1": 2, "classifier": 17, "ava-detection": 2, "stage2-pretraining": 6,
                        "stage2-retrieval": 14, "qa": 6}
    assert {f.name for f in FAMILIES} <= set(families)  # every family the converter has is listed
    files = [row.file for row in OFFICIAL_CHECKPOINTS]
    assert len(set(files)) == len(files)
    for expected in ("b16_ptk710_f8_res224.pth", "l16_ptk710_ftk710_ftk400_f16_res224.pth",
                     "b16_ptk710_ftk710_ftssv2_f8_res224.pth", "l16_ptk710_ftk710_ftk400_ftmitv1_f8_res384.pth",
                     "b16_5m.pth", "l16_17m.pth", "b16_25m.pth", "ret_msrvtt_b16_25m.pth", "qa_anet_l16_25m.pth"):
        assert expected in files


def test_rows_carry_address_command_and_status():
    for row in OFFICIAL_CHECKPOINTS:
        part = "multi_modality" if row.file.startswith(("b16_5", "b16_1", "b16_2", "l16_5", "l16_1", "l16_2", "ret_",
                                                        "qa_")) else "single_modality"
        assert row.url == f"https://pjlab-gvm-data.oss-cn-shanghai.aliyuncs.com/umt/{part}/{row.file}"
        assert row.command == ("python -m modeling_umt.convert_original_checkpoint --checkpoint "
                               f"{row.file} --output_dir converted/{row.file[:-4]}")
        converts = row.family in {f.name for f in FAMILIES}
        assert row.status == ("converts" if converts else {"qa": "added with video QA",
                                                           "detection": "not yet: action detection has no family"}
                              [row.family])
