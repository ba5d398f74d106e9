"""Run the fuzz suite and print its counts table (the one in docs/reliability.md):

    python tests/fuzz_counts.py [--markdown_only] [pytest arguments ...]

It runs tests/test_fuzz.py (configs, model inputs, files, URLs, checkpoints; each case reports its own outcome, see
tests/_fuzz.py) and, when present, the table cases of tests/test_fuzz_tables.py (`test_bad_table`: an `expected`
that is an (exception, regex) pair is a clear error, a dict a correct result), then prints one row per category:
cases, clear errors, correct results, silent wrong results, hangs and obscure crashes. Exit status 1 when any case
is not a clear error or a correct result.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter, defaultdict

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
COLUMNS = ("clear error", "correct result", "silent wrong", "hang", "obscure crash")


class FuzzTally:
    """pytest plugin: the category, expected outcome and actual outcome of every fuzz case."""

    def __init__(self):
        self.expected: dict[str, tuple[str, str]] = {}
        self.outcomes: dict[str, str] = {}

    def pytest_collection_modifyitems(self, items):
        for item in items:
            params = getattr(getattr(item, "callspec", None), "params", {})
            if "case" in params and hasattr(params["case"], "category"):
                self.expected[item.nodeid] = (params["case"].category, params["case"].expects)
            elif "expected" in params and "test_fuzz_tables" in item.nodeid:
                kind = "clear error" if isinstance(params["expected"], tuple) else "correct result"
                self.expected[item.nodeid] = ("tables", kind)

    def pytest_runtest_logreport(self, report):
        if report.nodeid not in self.expected or (report.when != "call" and not report.failed):
            return
        props = dict(report.user_properties)
        if "fuzz_outcome" in props:
            outcome = props["fuzz_outcome"]
        elif report.passed:
            outcome = self.expected[report.nodeid][1]
        else:
            text = str(report.longrepr)
            outcome = ("silent wrong" if "DID NOT RAISE" in text or "AssertionError" in text and "match" not in text
                       else "hang" if "Timeout" in text else "obscure crash")
        self.outcomes[report.nodeid] = outcome


def table(tally: FuzzTally) -> str:
    rows: dict[str, Counter] = defaultdict(Counter)
    for nodeid, outcome in tally.outcomes.items():
        rows[tally.expected[nodeid][0]][outcome] += 1
    order = ["configs", "model inputs", "files", "urls", "tables", "checkpoints"]
    names = [n for n in order if n in rows] + sorted(set(rows) - set(order))
    lines = ["| category | cases | clear error | correct result | silent wrong | hangs | obscure crashes |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    total = Counter()
    for name in names:
        total.update(rows[name])
        lines.append(f"| {name} | {sum(rows[name].values())} | " + " | ".join(str(rows[name][c]) for c in COLUMNS) + " |")
    lines.append(f"| **total** | **{sum(total.values())}** | " + " | ".join(f"**{total[c]}**" for c in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown_only", action="store_true", help="print the table alone, not pytest's output")
    args, extra = parser.parse_known_args(argv)
    if args.markdown_only:
        extra = ["-qq", "--no-header", "--no-summary", *extra]
    files = [os.path.join(HERE, "test_fuzz.py")]
    if os.path.isfile(os.path.join(HERE, "test_fuzz_tables.py")):
        files.append(os.path.join(HERE, "test_fuzz_tables.py"))
    tally = FuzzTally()
    pytest.main(["-q", "-p", "no:cacheprovider", *files, *extra], plugins=[tally])
    print("\n" + table(tally))
    bad = [n for n, o in tally.outcomes.items() if o not in COLUMNS[:2]]
    missing = set(tally.expected) - set(tally.outcomes)
    return 1 if bad or missing or not tally.outcomes else 0


if __name__ == "__main__":
    sys.exit(main())
