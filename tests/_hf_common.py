"""Fetch transformers' own common test mixins (`ModelTesterMixin`, `ConfigTester`) for the installed version.

They ship in the transformers **sdist** (`tests/test_modeling_common.py`, `tests/test_configuration_common.py`), not
in the wheel, so on first use this downloads the sdist of the installed version from PyPI with pip and extracts just
those two files into a git-ignored cache, `<repo>/.transformers_tests/<version>/hf_common_tests/`. Three modules
they import are not in the sdist either; they are replaced by the small stand-ins below:

- `exporters/test_export.py` -> an empty `ExportTesterMixin` (so the torch.export tests are not run);
- `generation/test_utils.py` -> an empty `GenerationTesterMixin` (UMT does not generate);
- `utils/test_configuration_utils.py` -> `config_common_kwargs`, copied from transformers v5's
  `tests/utils/test_configuration_utils.py`.

The mixins also need the `parameterized` package; when it is not installed its (pure-Python) wheel is downloaded
into the same cache. Nothing here is ever committed. `load_hf_common()` returns the two modules, or raises
`HFCommonUnavailable` with a one-line reason (no network, pip failure, ...) for the caller to skip on.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType

import transformers

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("UMT_TRANSFORMERS_TESTS_CACHE", ROOT / ".transformers_tests")) / transformers.__version__
PACKAGE = "hf_common_tests"
NEEDED = ("test_modeling_common.py", "test_configuration_common.py")

_STUBS = {
    "__init__.py": "",
    "exporters/__init__.py": "",
    "exporters/test_export.py": (
        '"""Stand-in: the real module is not in the transformers sdist."""\n\n\n'
        "class ExportTesterMixin:\n    pass\n"
    ),
    "generation/__init__.py": "",
    "generation/test_utils.py": (
        '"""Stand-in: the real module is not in the transformers sdist."""\n\n\n'
        "class GenerationTesterMixin:\n    pass\n"
    ),
    "utils/__init__.py": "",
    "utils/test_configuration_utils.py": (
        '"""Stand-in: `config_common_kwargs` as in transformers v5 tests/utils/test_configuration_utils.py."""\n\n'
        "config_common_kwargs = {\n"
        '    "return_dict": False,\n'
        '    "output_hidden_states": True,\n'
        '    "output_attentions": True,\n'
        '    "dtype": "float16",\n'
        '    "chunk_size_feed_forward": 5,\n'
        '    "architectures": ["BertModel"],\n'
        '    "id2label": {0: "label"},\n'
        '    "label2id": {"label": "0"},\n'
        '    "problem_type": "regression",\n'
        "}\n"
    ),
}


class HFCommonUnavailable(RuntimeError):
    """The common test files could not be obtained; the message is a one-line reason."""


def _pip_download(args: list[str], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", str(dest)]
    try:
        proc = subprocess.run(cmd + args, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise HFCommonUnavailable(f"pip download {' '.join(args)} failed: {err}") from err
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise HFCommonUnavailable(f"pip download {' '.join(args)} failed: {last[0]}")


def _fetch_sources() -> None:
    """Populate CACHE/PACKAGE from the sdist; atomic (build in a temp dir, then rename) so parallel runs are safe."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        tmp = Path(tmp)
        _pip_download(["--no-binary", ":all:", f"transformers=={transformers.__version__}"], tmp)
        sdists = list(tmp.glob("transformers-*.tar.gz"))
        if not sdists:
            raise HFCommonUnavailable("pip download returned no transformers sdist")
        staging = tmp / PACKAGE
        staging.mkdir()
        with tarfile.open(sdists[0]) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if Path(m.name).parent.name == "tests"}
            for name in NEEDED:
                if name not in members:
                    raise HFCommonUnavailable(f"the transformers {transformers.__version__} sdist has no tests/{name}")
                (staging / name).write_bytes(tar.extractfile(members[name]).read())
        for rel, text in _STUBS.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).write_text(text)
        try:
            os.rename(staging, CACHE / PACKAGE)
        except OSError:  # another process got there first
            if not (CACHE / PACKAGE / NEEDED[0]).exists():
                raise


def _ensure_parameterized() -> None:
    try:
        import parameterized  # noqa: F401

        return
    except ImportError:
        pass
    site = CACHE / "site"
    if not (site / "parameterized").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            tmp = Path(tmp)
            _pip_download(["--only-binary", ":all:", "parameterized"], tmp)
            wheels = list(tmp.glob("parameterized-*.whl"))
            if not wheels:
                raise HFCommonUnavailable("pip download returned no parameterized wheel")
            unpacked = tmp / "site"
            with zipfile.ZipFile(wheels[0]) as zf:
                zf.extractall(unpacked)
            try:
                os.rename(unpacked, site)
            except OSError:
                if not (site / "parameterized").exists():
                    raise
    if str(site) not in sys.path:
        sys.path.append(str(site))


def load_hf_common() -> tuple[ModuleType, ModuleType]:
    """Return (test_modeling_common, test_configuration_common) from transformers' sdist, fetching them if needed."""
    if not (CACHE / PACKAGE / NEEDED[0]).exists() or not (CACHE / PACKAGE / NEEDED[1]).exists():
        if (CACHE / PACKAGE).exists():
            shutil.rmtree(CACHE / PACKAGE, ignore_errors=True)
        _fetch_sources()
    _ensure_parameterized()
    if str(CACHE) not in sys.path:
        sys.path.insert(0, str(CACHE))
    try:
        modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
        configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    except ImportError as err:
        raise HFCommonUnavailable(f"cannot import transformers' common tests: {err}") from err
    return modeling, configuration
