"""The shared seams for files: atomic writes / folder publishing, and the one label-file reader."""

import json
import os

import pytest

from processors.fileio import atomic_file, atomic_write_text, cached_directory, publish_directory
from processors.labels import read_label_file


def test_atomic_file_is_complete_or_absent(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    atomic_write_text(target, "{}")
    assert target.read_text() == "{}"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "{}"  # the old file survives; no temp file is left behind
    assert sorted(os.listdir(target.parent)) == ["metrics.json"]


def test_publish_directory_replaces_only_when_complete(tmp_path):
    final, staging = tmp_path / "model", tmp_path / ".model.new"
    final.mkdir()
    (final / "old.txt").write_text("old")
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    with pytest.raises(FileExistsError):
        publish_directory(staging, final, replace=False)
    assert (final / "old.txt").exists() and staging.exists()
    publish_directory(staging, final)
    assert sorted(os.listdir(final)) == ["new.txt"] and not staging.exists()
    assert sorted(os.listdir(tmp_path)) == ["model"]
    with pytest.raises(FileNotFoundError, match="staging"):
        publish_directory(tmp_path / "missing", final)


def _builder(calls, content="new", marker=True):
    def build(staging):
        calls.append(staging)
        staging.mkdir()
        (staging / "data.txt").write_text(content)
        if marker:
            (staging / "info.json").write_text("{}")

    return build


def test_cached_directory_builds_once_and_reuses(tmp_path):
    calls = []
    final = cached_directory(tmp_path / "cache" / "set-abc", _builder(calls))
    assert final == tmp_path / "cache" / "set-abc" and (final / "data.txt").read_text() == "new"
    assert len(calls) == 1 and calls[0].parent == final.parent and calls[0].name.startswith(".set-abc.staging-")
    assert cached_directory(final, _builder(calls, "other")) == final and len(calls) == 1  # reused, not rebuilt
    assert (final / "data.txt").read_text() == "new" and sorted(os.listdir(final.parent)) == ["set-abc"]


def test_cached_directory_leaves_nothing_on_failure_and_replaces_a_stale_folder(tmp_path):
    def broken(staging):
        staging.mkdir()
        (staging / "half.txt").write_text("half")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError, match="mid-build"):
        cached_directory(tmp_path / "set", broken)
    assert os.listdir(tmp_path) == []  # neither a final folder nor a staging one
    with pytest.raises(RuntimeError, match="wrote no 'info.json'"):
        cached_directory(tmp_path / "set", _builder([], marker=False))
    assert os.listdir(tmp_path) == []
    (tmp_path / "set").mkdir()  # a stale folder without its marker (an older, interrupted writer)
    (tmp_path / "set" / "junk.txt").write_text("junk")
    final = cached_directory(tmp_path / "set", _builder([]))
    assert sorted(os.listdir(final)) == ["data.txt", "info.json"] and os.listdir(tmp_path) == ["set"]


def test_cached_directory_keeps_the_folder_a_concurrent_caller_published_first(tmp_path):
    final = tmp_path / "set"

    def racing(staging):
        _builder([], "first")(final)  # another process finishes and publishes while this one builds
        _builder([], "second")(staging)

    assert cached_directory(final, racing) == final
    assert (final / "data.txt").read_text() == "first" and os.listdir(tmp_path) == ["set"]


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("a.txt", "jump\nrun\n\nswim\n", ["jump", "run", "swim"]),
        ("b.json", json.dumps({"run": 1, "jump": 0}), ["jump", "run"]),
        ("c.json", json.dumps({"0": "x", "1": "y"}), ["x", "y"]),
        ("d.json", json.dumps(["p", "q"]), ["p", "q"]),
        ("config.json", json.dumps({"id2label": {"1": "b", "0": "a"}}), ["a", "b"]),
    ],
)
def test_read_label_file_layouts(tmp_path, name, content, expected):
    (tmp_path / name).write_text(content)
    assert read_label_file(tmp_path / name) == expected
    assert read_label_file(tmp_path / name, num_labels=len(expected)) == expected


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("gap.json", json.dumps({"a": 0, "b": 2}), "without gaps"),
        ("bad.json", "{not json", "not valid JSON"),
        ("num.json", json.dumps(3), "JSON list of names"),
        ("empty.txt", "\n\n", "defines no class"),
    ],
)
def test_read_label_file_names_the_problem(tmp_path, name, content, match):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=match):
        read_label_file(tmp_path / name)


def test_read_label_file_checks_the_count(tmp_path):
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    with pytest.raises(ValueError, match="3 labels but 5 classes"):
        read_label_file(tmp_path / "labels.txt", num_labels=5)
    with pytest.raises(ValueError, match="is not a file"):
        read_label_file(tmp_path / "nope.txt")
