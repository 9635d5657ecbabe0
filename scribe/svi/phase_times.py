"""Wall-clock times of a fit's phases (setup, compilation, steps), for benchmarks."""

from __future__ import annotations

import time


class PhaseTimes:
    """Wall and CPU seconds (all threads) between consecutive :meth:`mark` calls, by
    phase name (CPU time is the measure that a loaded machine does not inflate).

    ``mark("first_chunk", n)`` and ``mark("loop", n)`` also record how many steps the
    phase ran, so that benchmarks can separate compilation from step time.
    """

    def __init__(self):
        self._last = time.perf_counter()
        self._last_cpu = time.process_time()
        self._times: dict[str, float] = {}
        self._cpu: dict[str, float] = {}
        self._steps: dict[str, int] = {}

    def mark(self, phase: str, steps: int | None = None) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self._times[phase] = self._times.get(phase, 0.0) + now - self._last
        self._cpu[phase] = self._cpu.get(phase, 0.0) + cpu - self._last_cpu
        self._last_cpu = cpu
        if steps is not None:
            self._steps[phase] = int(steps)
        self._last = now

    def as_dict(self) -> dict:
        """``{phase}_s`` wall seconds, ``{phase}_cpu_s`` CPU seconds and ``{phase}_steps``
        step counts."""
        out = {f"{k}_s": v for k, v in self._times.items()}
        out.update({f"{k}_cpu_s": v for k, v in self._cpu.items()})
        out.update({f"{k}_steps": v for k, v in self._steps.items()})
        return out
