"""Polygon masks: rasterisation and privacy blanking of full frames."""

from __future__ import annotations

import numpy as np
import pytest

from edged.analysis.masks import apply_masks, keep_mask

SQUARE = ((0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75))
LEFT_HALF = ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))
TRIANGLE = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0))


@pytest.mark.parametrize(("masks", "width", "height", "masked_share"), [
    ((), 100, 50, 0.0),
    ((SQUARE,), 100, 100, 0.25),
    ((SQUARE,), 320, 180, 0.25),  # fractions of the frame: the same share at any size
    ((LEFT_HALF,), 64, 36, 0.5),
    ((TRIANGLE,), 200, 200, 0.5),
    ((SQUARE, LEFT_HALF), 100, 100, 0.625),  # overlapping polygons: the union
    ((((0.1, 0.1), (0.2, 0.2)),), 100, 100, 0.0),  # degenerate (2 points): ignored
])
def test_keep_mask_covers_the_polygons(masks: tuple[tuple[tuple[float, float], ...], ...], width: int,
                                       height: int, masked_share: float) -> None:
    """The raster is 0 inside the polygons and 255 elsewhere, at the requested size."""
    keep = keep_mask(masks, width, height)
    if masked_share == 0.0:
        assert keep is None or not (keep == 0).any()
        return
    assert keep is not None
    assert keep.shape == (height, width)
    assert keep.dtype == np.uint8
    assert set(np.unique(keep)) <= {0, 255}
    assert np.mean(keep == 0) == pytest.approx(masked_share, abs=0.03)


def test_keep_mask_is_read_only_and_cached() -> None:
    """The same masks and size give the same read-only array (rasterised once)."""
    a = keep_mask((SQUARE,), 80, 60)
    b = keep_mask([list(p) for p in (SQUARE,)], 80, 60)  # lists from YAML work as well as tuples
    assert a is b
    assert a is not None
    assert not a.flags.writeable


@pytest.mark.parametrize(("shape", "fill"), [((120, 160, 3), 0), ((120, 160, 3), (255, 0, 0)), ((120, 160), 7)])
def test_apply_masks_blanks_only_the_polygon(shape: tuple[int, ...], fill: int | tuple[int, ...]) -> None:
    """Pixels inside a mask take `fill`; every other pixel, and the input frame, stay as they were."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    image.flags.writeable = False  # frames are read-only
    out = apply_masks(image, (SQUARE,), fill)
    inside = (slice(40, 80), slice(50, 110))  # well inside the square
    outside = (slice(0, 20), slice(0, 30))
    assert np.all(out[inside] == np.asarray(fill, np.uint8))
    assert np.array_equal(out[outside], image[outside])
    assert not np.shares_memory(out, image)


def test_apply_masks_without_masks_returns_the_frame() -> None:
    """No masks: the frame itself comes back, uncopied."""
    image = np.zeros((10, 10, 3), np.uint8)
    assert apply_masks(image, ()) is image
