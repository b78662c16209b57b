"""`Frame`: one decoded video frame, immutable once published."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Frame:
    """A decoded frame from one camera.

    `image` is BGR uint8 and read-only (consumers share it, nobody writes to it). `ts` is the
    monotonic clock at capture, used for every scheduling decision; `pts` is the stream time in
    seconds (file position or seconds since the stream opened); `generation` counts reconnects
    and reconfigures, so a frame from before one is recognisable as stale.
    """

    camera: str
    seq: int
    ts: float
    wall_ts: float
    pts: float
    image: np.ndarray
    generation: int = 0

    def __post_init__(self) -> None:
        self.image.flags.writeable = False

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
