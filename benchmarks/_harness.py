"""Shared helpers for the side-by-side benchmarks: timing and table printing."""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any, Callable


def median_time(
    func: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None
) -> float:
    """Median wall time of ``func()`` over ``repeat`` runs (``setup`` untimed before each)."""
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        gc.collect()
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Table:
    """Rows of one scenario: each timing shown with its ratio to a reference row."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, float, str]] = []

    def add(self, name: str, seconds: float, note: str = "") -> float:
        self.rows.append((name, seconds, note))
        print(f"    {name}: {seconds * 1e3:.1f} ms {note}", flush=True)
        return seconds

    def render(self, reference: str, speedup: bool = True) -> str:
        """Markdown table; ratios are ``reference / run`` (speed-up) or ``run / reference``."""
        ref = next(s for n, s, _ in self.rows if n == reference)
        header = f"speed-up vs {reference}" if speedup else f"time / {reference}"
        lines = [
            f"### {self.title}",
            "",
            f"| run | median | {header} | note |",
            "|---|---:|---:|---|",
        ]
        for name, seconds, note in self.rows:
            ratio = ref / seconds if speedup else seconds / ref
            lines.append(f"| {name} | {seconds * 1e3:.1f} ms | {ratio:.2f}× | {note} |")
        return "\n".join(lines)
