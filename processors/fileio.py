"""Files that are either complete or absent: the one place that writes to a temporary name and renames.

Every writer of the project (checkpoints, converted models, metrics, figures, the synthetic dataset) publishes
through these helpers, so a kill at any moment never leaves a half-written file or folder under its final name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["atomic_file", "atomic_write_text", "cached_directory", "publish_directory", "staging_path"]


def staging_path(final: str | os.PathLike, tag: str = "tmp") -> Path:
    """The hidden sibling that `final` is written under before it is renamed: `<dir>/.<name>.<tag>-<pid>`.

    A sibling (same folder, so the same filesystem: `os.replace` is then atomic), hidden, and unique per process.
    """
    final = Path(final)
    return final.with_name(f".{final.name}.{tag}-{os.getpid()}")


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on a clean exit it is renamed to `final`, on an error it is removed.

    The temporary name keeps `final`'s suffix, so writers that pick a format by extension (matplotlib, PIL) work.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.stem}.tmp-{os.getpid()}{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(final: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `final` atomically; returns `final` as a Path."""
    with atomic_file(final) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(final)


def publish_directory(staging: str | os.PathLike, final: str | os.PathLike, replace: bool = True) -> Path:
    """Move the finished folder `staging` to `final`.

    An existing `final` is replaced only once the new folder is complete: it is first renamed aside, restored if
    the move fails, and deleted after the move succeeded. With `replace=False` an existing `final` is an error
    (`FileExistsError`) and `staging` is left untouched.
    """
    staging, final = Path(staging), Path(final)
    if not staging.is_dir():
        raise FileNotFoundError(f"staging folder {str(staging)!r} does not exist")
    backup = None
    if final.exists():
        if not replace:
            raise FileExistsError(f"{str(final)!r} already exists")
        backup = staging_path(final, "old")
        os.replace(final, backup)
    try:
        os.replace(staging, final)
    except BaseException:
        if backup is not None:
            os.replace(backup, final)
        raise
    if backup is not None:
        shutil.rmtree(backup) if backup.is_dir() else backup.unlink()
    return final


def cached_directory(final: str | os.PathLike, build: Callable[[Path], object], marker: str = "info.json") -> Path:
    """The folder `final`, built by `build(staging)` on first use; a folder whose `marker` file exists is complete.

    `build` writes into an empty hidden sibling (`staging_path(final, "staging")`) and writes `marker` last; the
    sibling is then published under `final`. An interrupted build leaves nothing that looks finished (the sibling is
    removed, also one left by a killed process with the same id), and concurrent callers each get a complete folder:
    the first to publish wins, and a folder without its marker (a stale incomplete one) is replaced.
    """
    final = Path(final)
    if (final / marker).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(final, "staging")
    shutil.rmtree(staging, ignore_errors=True)  # left by a killed run of a process with the same id
    try:
        build(staging)
        if not (staging / marker).is_file():
            raise RuntimeError(f"building {str(final)!r} wrote no {marker!r}, the file that marks the folder complete")
        try:
            publish_directory(staging, final, replace=False)
        except OSError:  # FileExistsError too: a concurrent caller published first, or a stale incomplete folder
            if not (final / marker).is_file():
                publish_directory(staging, final, replace=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final
