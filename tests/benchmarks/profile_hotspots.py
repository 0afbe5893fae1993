"""ClinFuse's own hot spots in a cProfile run, for the benchmarks that print a profile."""

from __future__ import annotations

import pstats


def clinfuse_hotspots(stats: pstats.Stats, root: str) -> list[tuple[tuple, tuple]]:
    """((file, line, function), (calls, ncalls, own s, cumulative s, callers)) of the functions under `root` (not
    the venv), by cumulative time, leaving out wrappers (a function spending 90% of its time in one ClinFuse
    callee): where the time goes, not the call chain."""
    ours = {key: entry for key, entry in stats.stats.items() if key[0].startswith(root) and "/.venv/" not in key[0]}
    biggest_callee: dict[tuple, float] = {}
    for entry in ours.values():
        for caller, (_, _, _, cumulative) in entry[4].items():
            biggest_callee[caller] = max(biggest_callee.get(caller, 0.0), cumulative)
    kept = [(key, entry) for key, entry in ours.items() if biggest_callee.get(key, 0.0) < 0.9 * entry[3]]
    return sorted(kept, key=lambda item: item[1][3], reverse=True)
