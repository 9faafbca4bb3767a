"""Shared helpers for the side-by-side benchmarks: timing and table printing."""

from __future__ import annotations

import gc
import os
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


def interleaved_median_times(funcs: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median wall time of each function, the functions taking turns in every round,
    so that a slow phase of a noisy machine weighs on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(repeat):
        for name, func in funcs.items():
            gc.collect()
            start = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


class Table:
    """Rows of one scenario: each timing shown with its ratio to a reference row."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, float, str, str | None]] = []

    def add(self, name: str, seconds: float, note: str = "", baseline: str | None = None) -> float:
        """Record a run; ``baseline`` names the row its ratio is taken against."""
        self.rows.append((name, seconds, note, baseline))
        print(f"    {name}: {_fmt(seconds)} {note}", flush=True)
        return seconds

    def render(self, reference: str, speedup: bool = True) -> str:
        """Markdown table. Each row's ratio is taken against its own baseline row (or
        ``reference``): ``baseline / run`` as a speed-up, or ``run / reference``."""
        times = {name: seconds for name, seconds, _, _ in self.rows}
        header = "speed-up vs baseline" if speedup else "time / baseline"
        lines = [
            f"### {self.title}",
            "",
            f"| run | median | {header} | baseline | note |",
            "|---|---:|---:|---|---|",
        ]
        for name, seconds, note, baseline in self.rows:
            base = baseline or reference
            ratio = times[base] / seconds if speedup else seconds / times[base]
            lines.append(f"| {name} | {_fmt(seconds)} | {ratio:.2f}× | {base} | {note} |")
        return "\n".join(lines)


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1e3:.1f} ms"


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (workers of workers too), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
            except (OSError, ValueError):
                pass
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a process (VmHWM), in MB; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
