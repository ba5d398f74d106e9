"""The fuzz suite's harness: a case is one bad (or good) input and what must happen to it.

A `Case` runs `call(env)` in a worker thread with a time limit and classifies what happened:

- "clear error": the expected exception type was raised and its message matches `error` (the message names the
  problem: the field, the argument, the file, the URL);
- "correct result": no error was expected, none came, and `check(result)` holds;
- "silent wrong": no error came although one was expected, or `check` failed;
- "obscure crash": another exception type, or a message that does not match;
- "hang": the call did not return within `limit` seconds.

The suite (tests/test_fuzz.py) asserts every case is a clear error or a correct result; tests/fuzz_counts.py tallies
the outcomes by category for docs/reliability.md.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

OUTCOMES = ("clear error", "correct result", "silent wrong", "obscure crash", "hang")
GOOD = ("clear error", "correct result")


@dataclass
class Case:
    category: str  # configs | model inputs | files | urls | checkpoints | tables
    name: str
    call: Callable
    error: str | None = None  # a regular expression the error message must match; None: a result is expected
    raises: type | tuple = Exception
    check: Callable | None = None  # result -> bool, for cases that expect a result
    limit: float = 30.0
    notes: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.category.replace(' ', '_')}-{self.name}"

    @property
    def expects(self) -> str:
        return "clear error" if self.error is not None else "correct result"


def run_case(case: Case, env) -> tuple[str, str]:
    """(outcome, detail) of one case; see the module docstring."""
    box: dict = {}

    def target():
        try:
            box["result"] = case.call(env)
        except BaseException as error:  # noqa: BLE001 - every failure is classified, none may escape
            box["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(case.limit)
    if thread.is_alive():
        return "hang", f"no return within {case.limit:g} s"
    if "error" in box:
        error = box["error"]
        text = f"{type(error).__name__}: {error}"
        if case.error is None:
            return "obscure crash", f"expected a result, got {text}"
        if not isinstance(error, case.raises) or not re.search(case.error, _flat(error)):
            return "obscure crash", f"expected {case.raises} matching {case.error!r}, got {text}"
        return "clear error", text
    if case.error is not None:
        return "silent wrong", f"expected an error matching {case.error!r}, got the result {box.get('result')!r:.200}"
    if case.check is not None and not case.check(box.get("result")):
        return "silent wrong", f"the result failed its check: {box.get('result')!r:.200}"
    return "correct result", ""


def _flat(error: BaseException) -> str:
    """The message of `error` and of its causes (huggingface_hub's strict validation wraps ours)."""
    parts = []
    while error is not None and len(parts) < 5:
        parts.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(parts)
