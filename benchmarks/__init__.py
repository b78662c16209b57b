"""edged's workshop: benchmarks, the soak, evaluation and synthetic test media (`python -m benchmarks`).

Not part of the `edged` package that goes onto the board; it reads the repository's `samples/` and
`tests/fixtures/` and imports `edged` like any user of it.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the checkout this runs from


def child_env(first: Path | None = None) -> dict[str, str]:
    """The environment for a `python -m benchmarks ...` child process started from any folder; `first`,
    when given, goes ahead of everything on its path (an AVX2 build shadowing an installed package)."""
    import os

    path = os.environ.get("PYTHONPATH", "")
    path = f"{REPO}{os.pathsep}{path}" if path else str(REPO)
    if first is not None:
        path = f"{first.resolve()}{os.pathsep}{path}"
    return {**os.environ, "PYTHONPATH": path}
