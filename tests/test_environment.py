"""The tested environment is locked: requirements-lock.txt pins every package the set-up installs, covers every
requirement of setup.cfg (with the test extras), and is what the tests run on unless UMT_UPGRADE=1 was asked."""

import configparser
import os
import re
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements-lock.txt"
sys.path.insert(0, str(ROOT / "training_scripts"))
from check_requirements import unmet_requirements  # noqa: E402  (a script's function, imported by path)


def locked_versions() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        assert match, f"requirements-lock.txt: not an exact pin: {line!r}"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def test_lock_pins_every_requirement_of_setup_cfg():
    pins = locked_versions()
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].strip().splitlines() + cfg["options.extras_require"]["test"].strip().splitlines()
    missing = []
    for line in lines:
        requirement = Requirement(line.strip())
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        if name not in pins or not requirement.specifier.contains(pins[name], prereleases=True):
            missing.append(f"{line.strip()} (locked: {pins.get(name)})")
    assert not missing, "setup.cfg asks for what the lock does not hold; refresh the lock: " + "; ".join(missing)


def test_lock_names_its_interpreter_and_platform():
    header = LOCK.read_text()
    assert re.search(r"^# python: \d+\.\d+$", header, re.M) and re.search(r"^# platform: \S+$", header, re.M)
    assert "bash training_scripts/setup_env.sh --refresh-lock" in header


def test_requirement_checker_reports_what_is_unmet(monkeypatch):
    assert unmet_requirements("umt-transformers", ["test"]) == []
    import check_requirements

    fake = {"requires": ["numpy>=1", "torch<1", 'nosuchpkg; extra == "test"', 'other; extra == "docs"']}
    monkeypatch.setattr(check_requirements.metadata, "requires", lambda name: fake["requires"])
    problems = unmet_requirements("fake", ["test"])
    assert len(problems) == 2 and problems[0].startswith("torch<1: ") and "nosuchpkg" in problems[1]
    assert unmet_requirements("fake", []) == [problems[0]]  # the extra's requirement counts only when asked


@pytest.mark.skipif(os.environ.get("UMT_UPGRADE") == "1", reason="UMT_UPGRADE=1: the newest releases, not the lock")
def test_running_environment_is_the_lock():
    want = LOCK.read_text()
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if f"# python: {py}" not in want or f"# platform: {sysconfig.get_platform()}" not in want:
        pytest.skip(f"the lock is for another interpreter/platform than Python {py} on {sysconfig.get_platform()}")
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    differ = {n: (v, installed.get(n)) for n, v in locked_versions().items() if installed.get(n) != v}
    assert not differ, f"installed versions differ from requirements-lock.txt (name: (locked, installed)): {differ}"
