"""Reading image files into the BGR uint8 frames the captioners take."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_image(path: Path | str) -> np.ndarray:
    """A BGR uint8 HxWx3 array (what OpenCV's capture yields); raises ValueError if unreadable."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return np.asarray(image)
