"""The released official UMT checkpoints: one table, the single source of docs/checkpoints.md and of the converter's
`--list`.

Facts from the official model zoos (OpenGVLab/unmasked_teacher: `single_modality/MODEL_ZOO.md`,
`single_modality/action_detection/README.md`, `multi_modality/MODEL_ZOO.md`): file names, download addresses and the
reported results. Each row's family is the converter family that reads it (`families.FAMILIES`); rows whose family is
not there yet say so in `status`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .families import FAMILIES

__all__ = ["OFFICIAL_CHECKPOINTS", "OfficialCheckpoint", "checkpoint_table"]

_HOST = "https://pjlab-gvm-data.oss-cn-shanghai.aliyuncs.com/umt"
_COMMAND = "python -m modeling_umt.convert_original_checkpoint --checkpoint {file} --output_dir converted/{stem}"
_PENDING: dict[str, str] = {}  # family name -> when it will convert, for rows whose family is not in the converter yet


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One released file: `file` (its name), `model` ("B/16" / "L/16"), `what` it is, the converter `family` that
    reads it, the official `result` reported for it, and a `note` on the official listing where it needs one."""

    file: str
    model: str
    what: str
    family: str
    result: str
    note: str = ""

    @property
    def url(self) -> str:
        """The official download address."""
        part = "multi_modality" if self.family.startswith(("stage2", "qa")) else "single_modality"
        return f"{_HOST}/{part}/{self.file}"

    @property
    def command(self) -> str:
        """The one command that converts it (run where the downloaded file is)."""
        return _COMMAND.format(file=self.file, stem=self.file.removesuffix(".pth"))

    @property
    def status(self) -> str:
        """"converts" when its family is in the converter, else when it will."""
        return "converts" if self.family in {f.name for f in FAMILIES} else _PENDING[self.family]


def _size(prefix: str) -> str:
    return {"b16": "B/16", "l16": "L/16"}[prefix]


def _rows() -> tuple[OfficialCheckpoint, ...]:
    rows = [OfficialCheckpoint(f"{m}_ptk710_f8_res224.pth", _size(m), "Stage 1: K710 pre-trained student (200 "
                               "epochs, 8 frames, 224 px)", "stage1", "-") for m in ("b16", "l16")]
    top1 = {  # (dataset, file middle, frames, resolution): (B/16, L/16) top-1, 8x3x4 views (16x3x4 for f16)
        ("K710", "ftk710", 8, 224): ("81.9", "86.0"),
        ("K400", "ftk710_ftk400", 8, 224): ("87.4", "90.3"),
        ("K400", "ftk710_ftk400", 16, 224): (None, "90.6"),
        ("K600", "ftk710_ftk600", 8, 224): ("87.8", "90.4"),
        ("K600", "ftk710_ftk600", 16, 224): (None, "90.5"),
        ("K700", "ftk710_ftk700", 8, 224): ("78.5", "83.2"),
        ("K700", "ftk710_ftk700", 16, 224): (None, "83.6"),
        ("MiT V1", "ftk710_ftk400_ftmitv1", 8, 224): ("44.6", "48.0"),
        ("MiT V1", "ftk710_ftk400_ftmitv1", 8, 384): ("45.5", "48.7"),
        ("SSv2", "ftk710_ftssv2", 8, 224): ("70.8", "74.7"),
    }
    for (dataset, middle, frames, res), results in top1.items():
        for m, result in zip(("b16", "l16"), results):
            if result is None:
                continue
            note = ""
            if dataset == "MiT V1" and res == 384 and m == "b16":
                note = "the official table labels this B/16 file 'UMT-L/16 384'"
            rows.append(OfficialCheckpoint(
                f"{m}_ptk710_{middle}_f{frames}_res{res}.pth", _size(m),
                f"classifier: {dataset} fine-tuned ({frames} frames, {res} px)", "classifier",
                f"top-1 {result} ({frames}x3x4 views)", note))
    rows += [OfficialCheckpoint(f"{m}_ptk710_ftk710_ftava_f8_res224.pth", _size(m), "AVA v2.2 action detection "
                                "(8 frames)", "ava-detection", f"mAP {r}") for m, r in (("b16", "33.5"), ("l16", "39.8"))]
    corpora = {"5m": "CC3M + WebVid2M", "17m": "CC3M + CC12M + COCO + VG + SBU + WebVid2M",
               "25m": "CC3M + CC12M + COCO + VG + SBU + WebVid10M"}
    msrvtt_zero_shot = {("b16", "5m"): "29.6", ("b16", "17m"): "35.5", ("b16", "25m"): "35.2",
                        ("l16", "5m"): "33.3", ("l16", "17m"): "42.6", ("l16", "25m"): "40.7"}
    for m in ("b16", "l16"):
        for corpus, data in corpora.items():
            rows.append(OfficialCheckpoint(
                f"{m}_{corpus}.pth", _size(m), f"Stage 2: video-text pre-trained on {corpus.upper()} ({data})",
                "stage2-pretraining", f"zero-shot MSRVTT T2V R@1 {msrvtt_zero_shot[m, corpus]}"))
    retrieval = {"msrvtt": "MSRVTT", "didemo": "DiDeMo", "anet": "ActivityNet", "lsmdc": "LSMDC", "msvd": "MSVD",
                 "ssv2_label": "SSv2-label", "ssv2_tpl": "SSv2-template"}
    for m in ("b16", "l16"):
        for key, dataset in retrieval.items():
            note = ("the official table links the B/16 file for this entry; this address follows the file naming"
                    if (m, key) == ("l16", "ssv2_tpl") else "")
            rows.append(OfficialCheckpoint(f"ret_{key}_{m}_25m.pth", _size(m), f"retrieval: {dataset} fine-tuned "
                                           "from 25M", "stage2-retrieval", "-", note))
    qa = {"anet": ("ActivityNet-QA", "44.8", "47.9"), "msrvtt": ("MSRVTT-QA", "44.9", "47.1"),
          "msvd": ("MSVD-QA", "49.5", "55.2")}
    for m in ("b16", "l16"):
        for key, (dataset, b_acc, l_acc) in qa.items():
            note = ("the official table links the B/16 file for this entry; this address follows the file naming"
                    if (m, key) == ("l16", "msvd") else "")
            rows.append(OfficialCheckpoint(f"qa_{key}_{m}_25m.pth", _size(m), f"video QA: {dataset} fine-tuned from "
                                           "25M", "qa", f"accuracy {b_acc if m == 'b16' else l_acc}", note))
    return tuple(rows)


OFFICIAL_CHECKPOINTS: tuple[OfficialCheckpoint, ...] = _rows()


def checkpoint_table() -> str:
    """The table as Markdown: file (linked to its download), model, what it is, official result, converter family,
    status and the conversion command; notes on the official listing follow the table."""
    lines = ["| file | model | what | official result | family | conversion | command |",
             "|---|---|---|---|---|---|---|"]
    notes = []
    for row in OFFICIAL_CHECKPOINTS:
        marker = ""
        if row.note:
            notes.append(row.note)
            marker = f" [{len(notes)}]"
        lines.append(f"| [{row.file}]({row.url}){marker} | {row.model} | {row.what} | {row.result} | `{row.family}` "
                     f"| {row.status} | `{row.command}` |")
    lines += [""] + [f"- [{i}] {row_note}" for i, row_note in enumerate(notes, 1)]
    return "\n".join(lines)
