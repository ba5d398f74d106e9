"""Exit 1, listing what is wrong, unless every requirement of an installed distribution (with the given extras) is
installed in a matching version. `pip check` verifies the base requirements only; this adds the extras.

    python training_scripts/check_requirements.py umt-transformers test
"""

import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.version import Version


def unmet_requirements(distribution: str, extras: list[str]) -> list[str]:
    """Requirement strings of `distribution` (its base requirements and those of `extras`) that the environment
    does not satisfy, each with what is installed instead."""
    problems = []
    for line in metadata.requires(distribution) or []:
        requirement = Requirement(line)
        environments = [{"extra": extra} for extra in ["", *extras]]
        if requirement.marker is not None and not any(requirement.marker.evaluate(env) for env in environments):
            continue
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{line}: not installed")
            continue
        if not requirement.specifier.contains(Version(installed), prereleases=True):
            problems.append(f"{line}: {installed} is installed")
    return problems


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    problems = unmet_requirements(argv[0], argv[1:])
    for problem in problems:
        print(f"[setup] unmet requirement of {argv[0]}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
