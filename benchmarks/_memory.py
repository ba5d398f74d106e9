"""Process memory for the benchmarks: current and peak resident set size, and a reset of the peak.

Linux reads /proc/self (`VmRSS`, `VmHWM`, `clear_refs`); elsewhere both fall back to the lifetime peak
(`ru_maxrss`) and the reset reports that it could not happen. Imported by the benchmark scripts, which run with
this folder first on sys.path.
"""

from __future__ import annotations

import resource


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def maxrss_kb() -> int:
    """The lifetime peak RSS in KiB (Linux units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_kb() -> int:
    """The current RSS in KiB (the lifetime peak where the current value is not available)."""
    rss = _status_kb("VmRSS")
    return rss if rss is not None else maxrss_kb()


def peak_kb() -> int:
    """The RSS high-water mark in KiB since the last `reset_peak` (or since the start)."""
    peak = _status_kb("VmHWM")
    return peak if peak is not None else maxrss_kb()


def reset_peak() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
