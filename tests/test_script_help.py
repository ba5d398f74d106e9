"""Honest `--help`: every option of every script shows its default, each default a script changes from
`TrainingArguments` says so with its value, and every boolean is the same kind of switch (`--flag` alone is True,
`--flag False` still works)."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from pathlib import Path

import pytest
from transformers import TrainingArguments

from modeling_umt.cli import script_parser

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "training_scripts").glob("run_*.py"))


def _options(help_text: str) -> dict[str, str]:
    """--option -> its whole help block (the option line and the lines below it up to the next option)."""
    blocks: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        match = re.match(r"^  (-{1,2}[\w-]+)", line)
        if match:
            current = match.group(1)
            blocks[current] = line
        elif current and line.startswith("   "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


def _module(script: Path):
    """The script imported by path (its `main` not run)."""
    name = f"_help_{script.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, script)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


def _dataclasses_of(script: Path) -> list[type]:
    """The argument dataclasses a script defines."""
    module = _module(script)
    return [value for value in vars(module).values() if isinstance(value, type) and dataclasses.is_dataclass(value)
            and value.__module__ == module.__name__]


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_help_shows_every_default(script, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    with pytest.raises(SystemExit) as done:
        _module(script).main(["--help"])  # the script's own parser, as `python script --help` builds it
    assert done.value.code == 0
    blocks = _options(capsys.readouterr().out)
    assert len(blocks) > 3
    missing = [name for name, block in blocks.items() if name not in ("-h", "--help") and "(default:" not in block]
    assert not missing, f"{script.name} --help shows no default for {missing}"

    base = {f.name: f for f in dataclasses.fields(TrainingArguments)}
    for dtype in _dataclasses_of(script):
        if not issubclass(dtype, TrainingArguments):
            continue
        for field in dataclasses.fields(dtype):
            if field.name not in base or field.default is dataclasses.MISSING:
                continue
            if field.default != base[field.name].default:  # a default the script changes
                block = " ".join(blocks[f"--{field.name}"].split())
                assert "this script's default" in block and f"(default: {field.default})" in block, block


def test_every_boolean_is_a_switch():
    @dataclasses.dataclass
    class Flags:
        on: bool = True
        off: bool = False
        auto: bool | None = None

    parser = script_parser((Flags,))
    parse = parser.parse_args_into_dataclasses
    assert parse([]) == (Flags(True, False, None),)
    assert parse(["--off", "--auto"]) == (Flags(True, True, True),)  # a bare flag is True, also for bool | None
    assert parse(["--no_on", "--auto", "False"]) == (Flags(False, False, False),)  # values still accepted
    assert parse(["--on", "false", "--off", "true"]) == (Flags(False, True, None),)


def test_flip_is_the_same_switch_in_every_script():
    for script in ("run_stage1", "run_stage2", "run_finetune", "run_retrieval"):
        types = _dataclasses_of(ROOT / "training_scripts" / f"{script}.py")
        parser = script_parser(tuple(t for t in types if any(f.name == "flip" for f in dataclasses.fields(t))))
        (args,) = parser.parse_args_into_dataclasses(["--flip"])
        assert args.flip is True, script
