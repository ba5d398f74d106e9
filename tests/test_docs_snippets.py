"""Every snippet in README.md and docs/*.md runs as written.

* ```python blocks: each block runs alone, in a fresh interpreter of its own, as a user pastes it — in a temporary
  folder that holds tiny versions of what a user would have produced by then: a video (`clip.mp4`), a video table
  (`train.csv`), `outputs/stage1/model`, `outputs/stage2/model` (+ tokenizer), `outputs/finetune/model` (+ video
  processor) and a converted official checkpoint (`converted/umt-b16-k400`, made by the real converter from a tiny
  official-layout `.pth`). A block may rely on earlier ones only explicitly:
  - `<!-- snippet: setup -->` right before a block's fence marks a setup block (it also runs alone, like any block);
  - `<!-- snippet: after setup -->` marks a block that continues the setup blocks above it in the same file: the
    test runs those setup blocks first, in the same fresh interpreter, then the block.
  A block that cannot run here is marked with `<!-- snippet: skip (reason) -->` and reported as a skipped test with
  that reason.
* ```bash / ```sh / ```console blocks: every `python <repo script>.py ...` (also through torchrun, accelerate launch
  or deepspeed) must parse with the parser that script builds in its `main()`, every `python -m <repo module>` must
  name an existing module (and parse, when it has a `main()`), and every repository path a command names must exist.
  Nothing is trained: this catches drift between the docs and the command lines.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import contextlib
import csv
import json
import importlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP_MARKER = re.compile(r"^\s*<!--\s*snippet:\s*skip\s*\((?P<reason>.+)\)\s*-->\s*$")
ROLE_MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(?P<role>setup|after setup)\s*-->\s*$")
SNIPPET_TIMEOUT_S = 600
SNIPPET_WORKERS = 3  # imports are single-threaded and partly I/O: 3 side by side fill 2 cores
FENCE_OPEN = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh"}
# Top-level folders of the repository that docs refer to by path (`outputs/` is a run output, not part of the repo).
REPO_DIRS = ("training_scripts", "modeling_umt", "processors", "benchmarks", "tests", "docs")
LAUNCHERS = {"torchrun", "deepspeed"}


# ----------------------------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip_reason: str | None
    role: str | None = None  # "setup", "after setup" or None (stands alone)

    @property
    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """Fenced code blocks of a markdown file, with the indentation of their fence removed."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE_OPEN.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        start, body = i, []
        i += 1
        while i < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path.relative_to(ROOT)}:{start + 1}: fence never closed")
        i += 1
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        skip, role = SKIP_MARKER.match(previous), ROLE_MARKER.match(previous)
        blocks.append(
            Block(path, start + 1, match["lang"].lower(), "\n".join(body) + "\n", skip and skip["reason"],
                  role and role["role"])
        )
    return blocks


BLOCKS = {path: fenced_blocks(path) for path in DOC_FILES}
PYTHON_BLOCKS = [b for bs in BLOCKS.values() for b in bs if b.lang == "python" and not b.skip_reason]
PYTHON_FILES = sorted({b.path for b in PYTHON_BLOCKS})
SKIPPED_BLOCKS = [b for bs in BLOCKS.values() for b in bs if b.lang == "python" and b.skip_reason]
SHELL_FILES = [p for p, bs in BLOCKS.items() if any(b.lang in SHELL_LANGS for b in bs)]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ----------------------------------------------------------------------------------------------------------------
# The workspace a reader of the docs would have: tiny artifacts at the paths the docs use
# ----------------------------------------------------------------------------------------------------------------
def _caption_vocabulary() -> list[str]:
    """A tiny BERT vocabulary: special tokens + every word of the synthetic captions and of the docs' prompts."""
    from processors.synthetic import CLASS_NAMES, COLOURS, SHAPES, TEXTURES

    words = " ".join([*CLASS_NAMES, *COLOURS, *SHAPES, *TEXTURES, "a an the of video clip someone"]).replace("-", " ")
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "-", *sorted(set(words.split()))]


def _tiny_umt(**overrides):
    from modeling_umt import UMTConfig

    kwargs = dict(
        image_size=64, patch_size=16, num_frames=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128,
    )
    return UMTConfig(**{**kwargs, **overrides})


def _build_workspace(ws: Path) -> None:
    import torch
    from transformers import BertConfig, BertTokenizer

    from modeling_umt import UMTForPreTraining, UMTForVideoClassification, UMTForVideoTextRetrieval
    from modeling_umt import UMTRetrievalConfig
    from modeling_umt.configuration_umt_retrieval import STAGE2_VISION_DEFAULTS
    from modeling_umt.conversion.cli import main as convert_main
    from modeling_umt.publishing import complete_model_folder
    from processors.synthetic import CLASS_NAMES, ensure_synthetic_dataset
    from processors.video_processing_umt import UMTVideoProcessor

    torch.manual_seed(0)
    # Videos: the default synthetic dataset (16 frames, 64 px) at a small size; the docs' call with these parameters
    # then finds it in the cache ($UMT_CACHE_DIR points into the workspace).
    root = ensure_synthetic_dataset(num_videos=100, num_workers=1)
    shutil.copy(root / "videos" / "000000.mp4", ws / "clip.mp4")
    # A user's own videos: a plain table (path, label) and one for all stages (path, label, caption, split)
    (ws / "videos").mkdir()
    with open(root / "metadata.csv", newline="") as f:
        metadata = list(csv.DictReader(f))[:8]
    train_rows, all_rows = [["path", "label"]], [["path", "label", "caption", "split"]]
    for i, row in enumerate(metadata):
        name = Path(row["path"]).name
        shutil.copy(root / row["path"], ws / "videos" / name)
        train_rows.append([f"videos/{name}", row["label"]])
        all_rows.append([f"videos/{name}", row["label"], row["caption"], (["train"] * 6 + ["val", "test"])[i]])
    for name, rows in (("train.csv", train_rows), ("my_videos.csv", all_rows)):
        with open(ws / name, "w", newline="") as f:
            csv.writer(f).writerows(rows)

    labels = dict(enumerate(CLASS_NAMES))
    # run_stage1.py output: a UMTForPreTraining (8 frames, 64 px as the script's defaults) + video processor + card
    stage1 = UMTForPreTraining(_tiny_umt(uta_num_layers=2, uta_output_dim=32))
    stage1.save_pretrained(ws / "outputs/stage1/model")
    complete_model_folder(ws / "outputs/stage1/model", stage1)
    # ... and its Trainer log (what the loss-curve snippets read)
    history = [{"step": s, "loss": 1.0 / s, "uta_layer_1": 1.1 / s, "uta_layer_2": 0.9 / s} for s in range(1, 6)]
    (ws / "outputs/stage1/trainer_state.json").write_text(json.dumps({"log_history": history}))
    # run_finetune.py output: classifier + its video processor
    finetune_dir = ws / "outputs/finetune/model"
    finetuned = UMTForVideoClassification(_tiny_umt(num_labels=len(labels), id2label=labels))
    finetuned.save_pretrained(finetune_dir)
    complete_model_folder(finetune_dir, finetuned, UMTVideoProcessor(
        size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}, num_frames=8))  # fmt: skip
    # run_stage2.py output: video-text model (4 frames, 64 px as the script's defaults) + UMTProcessor + card
    vocab = ws / "vocab.txt"
    vocab.write_text("\n".join(_caption_vocabulary()) + "\n")
    tokenizer = BertTokenizer(str(vocab))
    vision = _tiny_umt(**{**STAGE2_VISION_DEFAULTS, "num_frames": 4, "uta_num_layers": 2, "uta_output_dim": 32})
    text = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64,
    )
    config = UMTRetrievalConfig(
        vision_config=vision, text_config=text, fusion_layer=2, embed_dim=16, text_pooling="mean",
        mask_token_id=tokenizer.mask_token_id, cls_token_id=tokenizer.cls_token_id,
    )
    stage2_dir = ws / "outputs/stage2/model"
    stage2 = UMTForVideoTextRetrieval(config)
    stage2.save_pretrained(stage2_dir)
    complete_model_folder(stage2_dir, stage2, tokenizer)
    vocab.unlink()
    # An official fine-tuned classifier, converted with the real command line: a tiny classifier of the released
    # layout (8 frames x 224 px, so the .pth has no pos_embed) written in the official key layout, then converted.
    official_labels = ["abseiling", "air drumming", "answering questions", "applauding", "applying cream"]
    tiny_official = ws / "_official_src"
    UMTForVideoClassification(
        _tiny_umt(image_size=224, num_labels=5, id2label=dict(enumerate(official_labels)))
    ).save_pretrained(tiny_official)
    (ws / "k400_labels.txt").write_text("\n".join(official_labels) + "\n")
    with contextlib.redirect_stdout(io.StringIO()):
        assert convert_main(["--reverse", "--checkpoint", str(tiny_official), "--output_dir", str(ws / "_pth")]) == 0
        shutil.move(ws / "_pth" / "model.pth", ws / "b16_ptk710_ftk710_ftk400_f8_res224.pth")
        assert convert_main([
            "--checkpoint", str(ws / "b16_ptk710_ftk710_ftk400_f8_res224.pth"), "--num_attention_heads", "4",
            "--label_file", str(ws / "k400_labels.txt"), "--output_dir", str(ws / "converted/umt-b16-k400"),
        ]) == 0
    shutil.rmtree(tiny_official)
    shutil.rmtree(ws / "_pth")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("docs_workspace")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UMT_CACHE_DIR", str(ws / "umt-cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_HOME", str(ws / "hf-home"))
        mp.chdir(ws)
        mp.syspath_prepend(str(ROOT))
        _build_workspace(ws)
        yield ws


# ----------------------------------------------------------------------------------------------------------------
# Python blocks
# ----------------------------------------------------------------------------------------------------------------
def setup_blocks_before(block: Block) -> list[Block]:
    """The setup blocks above `block` in its file (what an `after setup` block runs first)."""
    return [b for b in BLOCKS[block.path] if b.role == "setup" and b.line < block.line and b.lang == "python"]


def program_of(block: Block) -> str:
    """The program one fresh interpreter runs for `block`: its setup blocks when it declares them, then the block.
    Each part keeps its own file:line in tracebacks."""
    parts = [*setup_blocks_before(block), block] if block.role == "after setup" else [block]
    lines = []
    for part in parts:
        lines.append(f"exec(compile({part.code!r}, {part.where!r}, 'exec'))")
    return "\n".join(lines) + "\n"


def test_docs_have_snippets():
    """The extraction finds what the docs hold (a broken fence parser would silently test nothing)."""
    assert ROOT / "docs" / "index.md" in DOC_FILES
    assert len(PYTHON_FILES) >= 5 and len(SHELL_FILES) >= 5
    assert all(b.code.strip() for b in PYTHON_BLOCKS)
    for block in PYTHON_BLOCKS:  # a continuation needs something to continue
        if block.role == "after setup":
            assert setup_blocks_before(block), f"{block.where}: 'after setup' but no setup block above it"


def run_snippet(block: Block, workspace: Path) -> subprocess.CompletedProcess:
    """Run `block` (after its declared setup blocks) in a fresh interpreter, in a private copy of the workspace, so
    that no other block's files or side effects are visible to it."""
    own = Path(tempfile.mkdtemp(prefix="snippet-", dir=workspace.parent))
    shutil.copytree(workspace, own, dirs_exist_ok=True, symlinks=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "UMT_CACHE_DIR": str(own / "umt-cache"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(own / "hf-home"),
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",  # blocks run side by side (SNIPPET_WORKERS); one thread each keeps the cores shared
    }
    try:
        return subprocess.run(
            [sys.executable, "-c", program_of(block)], cwd=own, env=env, capture_output=True, text=True,
            timeout=SNIPPET_TIMEOUT_S,
        )
    finally:
        shutil.rmtree(own, ignore_errors=True)


def check_snippet(block: Block, result: subprocess.CompletedProcess) -> None:
    if result.returncode != 0:
        pytest.fail(
            f"snippet at {block.where} failed in a fresh interpreter:\n{block.code}\n{result.stderr[-6000:]}",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def snippet_runs(workspace):
    """Every python block started at once on a small pool (each in its own interpreter and workspace copy); a test
    waits for its own block's result."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=SNIPPET_WORKERS) as pool:
        yield {block.where: pool.submit(run_snippet, block, workspace) for block in PYTHON_BLOCKS}


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.where)
def test_python_snippet_runs_alone(block, snippet_runs):
    """The block, pasted into a fresh interpreter (after its declared setup blocks, if any), runs."""
    check_snippet(block, snippet_runs[block.where].result())


def test_python_snippet_check_catches_a_missing_definition(workspace, tmp_path):
    """A block that uses a name only an earlier block defines fails alone (the check has teeth)."""
    doc = tmp_path / "doc.md"
    doc.write_text("```python\nmodel = 1\n```\n\n```python\nprint(model)\n```\n")
    first, second = fenced_blocks(doc)
    BLOCKS[doc] = [first, second]
    try:
        check_snippet(first, run_snippet(first, workspace))
        with pytest.raises(pytest.fail.Exception, match="NameError: name 'model' is not defined"):
            check_snippet(second, run_snippet(second, workspace))
        first.role, second.role = "setup", "after setup"
        check_snippet(second, run_snippet(second, workspace))
    finally:
        del BLOCKS[doc]


@pytest.mark.parametrize("block", SKIPPED_BLOCKS, ids=lambda b: b.where)
def test_skipped_python_snippet(block):
    pytest.skip(f"{block.where}: {block.skip_reason}")


# ----------------------------------------------------------------------------------------------------------------
# Shell blocks
# ----------------------------------------------------------------------------------------------------------------
def shell_commands(code: str) -> list[list[str]]:
    """Simple commands of a shell block: continuations joined, comments dropped, split at ; && || |."""
    joined = re.sub(r"\\\n", " ", code)
    commands = []
    for line in joined.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.lstrip().startswith("$ "):  # console prompt
            line = line.lstrip()[2:]
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in lexer:
            if token and set(token) <= set(";&|"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token)
        if current:
            commands.append(current)
    return commands


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


def _raise_with_parser(self, *args, **kwargs):
    raise _Captured(self)


_PARSERS: dict[str, argparse.ArgumentParser | None] = {}


def _calls_parser(module) -> bool:
    """True when `module.main` visibly parses arguments (guard: never run a main() that does real work instead)."""
    import inspect

    tree = ast.parse(textwrap.dedent(inspect.getsource(module.main)))
    names = {getattr(n.func, "attr", getattr(n.func, "id", "")) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return any("parse" in name for name in names)


def parser_of(key: str, load) -> argparse.ArgumentParser | None:
    """The argparse parser `main()` of a script / module builds (None when it has no main), captured by stopping
    main() at its first parse call."""
    if key not in _PARSERS:
        module = load()
        if not hasattr(module, "main"):
            _PARSERS[key] = None
            return None
        assert _calls_parser(module), f"{key}: main() does not parse arguments; cannot check its command lines"
        with (
            mock.patch.object(argparse.ArgumentParser, "parse_known_args", _raise_with_parser),
            mock.patch.object(argparse.ArgumentParser, "parse_args", _raise_with_parser),
            mock.patch.object(sys, "argv", [key]),
        ):
            try:
                module.main()
            except _Captured as captured:
                _PARSERS[key] = captured.parser
            else:
                raise AssertionError(f"{key}: main() returned without parsing its arguments")
    return _PARSERS[key]


def _load_script(path: Path):
    def load():
        name = "_docs_script_" + re.sub(r"\W", "_", str(path.relative_to(ROOT)))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses with string annotations look their module up there
        spec.loader.exec_module(module)
        return module

    return load


def check_arguments(what: str, parser: argparse.ArgumentParser, args: list[str]) -> str | None:
    """None when `args` parse (argument names, value types and choices), else the parser's complaint."""
    from transformers import HfArgumentParser

    args = [a for a in args if a != "..."]  # "..." in a doc command stands for "the other arguments"
    if len(args) == 1 and args[0].endswith((".json", ".yaml", ".yml")):
        # one config file holding every argument: what modeling_umt.cli.parse_script_arguments accepts
        return None if isinstance(parser, HfArgumentParser) else f"{what}: a single config file is not accepted"
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            parser.parse_args(args)  # argparse only: TrainingArguments' checks of the machine (bf16, GPUs) are skipped
        except SystemExit as exit_:
            if exit_.code not in (0, None):  # 0: --help
                return f"{what} {shlex.join(args)}\n    {err.getvalue().strip().splitlines()[-1]}"
    return None


def check_command(command: list[str]) -> list[str]:
    """Problems with one shell command (empty when fine)."""
    problems = []
    while command and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", command[0]):  # env-var prefixes
        command = command[1:]
    if not command:
        return problems
    for token in command:  # every repository path named must exist
        path = token.split("=", 1)[-1]
        if path.split("/", 1)[0] in REPO_DIRS and "/" in path and not any(c in path for c in "*?{<"):
            if not (ROOT / path).exists():
                problems.append(f"{shlex.join(command)}: no such file in the repository: {path}")
    program = os.path.basename(command[0])
    script, args, module = None, [], None
    if re.fullmatch(r"python(3(\.\d+)?)?", program):
        rest = command[1:]
        while rest and rest[0].startswith("-") and rest[0] != "-m":
            rest = rest[1:]  # interpreter options (-u, -O, ...)
        if rest[:1] == ["-m"] and len(rest) > 1:
            module, args = rest[1], rest[2:]
        elif rest:
            script, args = rest[0], rest[1:]
    elif program in LAUNCHERS or (program == "accelerate" and command[1:2] == ["launch"]):
        for i, token in enumerate(command[1:], start=1):
            if token.endswith(".py"):
                script, args = token, command[i + 1 :]
                break
        else:
            if "-m" in command:  # torchrun -m package.module
                i = command.index("-m")
                module, args = command[i + 1], command[i + 2 :]
    if script is not None and script.split("/", 1)[0] in REPO_DIRS and (ROOT / script).is_file():
        parser = parser_of(script, _load_script(ROOT / script))
        if parser is not None and (problem := check_arguments(script, parser, args)):
            problems.append(problem)
    if module is not None and module.split(".", 1)[0] in REPO_DIRS:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            problems.append(f"{shlex.join(command)}: no module named {module}")
        else:
            parser = parser_of(module, lambda: importlib.import_module(module))
            if parser is not None and (problem := check_arguments(f"-m {module}", parser, args)):
                problems.append(problem)
    return problems


@pytest.mark.parametrize("md", SHELL_FILES, ids=_rel)
def test_shell_commands_parse(md, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.chdir(ROOT)
    problems, checked = [], 0
    for block in BLOCKS[md]:
        if block.lang not in SHELL_LANGS:
            continue
        for command in shell_commands(block.code):
            found = check_command(command)
            checked += 1
            problems += [f"{block.where}: {p}" for p in found]
    assert checked, f"{_rel(md)}: no command found in its shell blocks"
    assert not problems, "\n".join(problems)


def test_shell_checker_catches_drift():
    """The checks above can fail: an unknown flag, a wrong value type, a missing module and a missing file."""
    bad = shell_commands(
        "OMP_NUM_THREADS=1 python training_scripts/run_stage1.py --no_such_flag 1\n"
        "torchrun --nproc_per_node 2 training_scripts/run_finetune.py \\\n    --num_frames eight\n"
        "python -m modeling_umt.no_such_module --help && bash training_scripts/no_such.sh\n"
    )
    assert [len(check_command(c)) for c in bad] == [1, 1, 1, 1]
    good = shell_commands("accelerate launch --config_file training_scripts/configs/accelerate_cpu_2proc.yaml "
                          "training_scripts/run_stage1.py --use_cpu --max_steps 2  # comment")
    assert good == [["accelerate", "launch", "--config_file", "training_scripts/configs/accelerate_cpu_2proc.yaml",
                     "training_scripts/run_stage1.py", "--use_cpu", "--max_steps", "2"]]
    assert check_command(good[0]) == []
