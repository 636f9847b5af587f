"""A progress bar for long runs (tqdm), updated in batches so it costs nothing per step."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """Shows steps/s and samples/s on stderr; a no-op when disabled."""

    def __init__(self, total: int, initial: int, *, enabled: bool, desc: str, unit: str = "step") -> None:
        self._bar: Any = None
        self._start = time.perf_counter()
        self._initial = initial
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                unit=unit,
                unit_scale=True,
                mininterval=0.5,
                file=sys.stderr,
                dynamic_ncols=True,
            )

    def update(self, step: int, samples: int) -> None:
        """Move the bar to ``step`` steps done with ``samples`` samples drawn this session."""
        bar = self._bar
        if bar is None:
            return
        bar.update(step - bar.n)
        elapsed = time.perf_counter() - self._start
        if elapsed > 0:
            rate = samples / elapsed
            bar.set_postfix_str(f"{rate:,.0f} samples/s" if rate >= 10 else f"{rate:.2f} samples/s", refresh=False)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
