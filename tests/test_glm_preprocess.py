"""Image preprocessing follows transformers' Mllama processor with one 672 tile (aspect fit, pad, 0.5)."""

from __future__ import annotations

import numpy as np
import pytest

from edged.inference.manifest import Preprocessing
from edged.inference.preprocess import fit_size, normalize, pixel_values, resize_and_pad, to_rgb

SPEC = Preprocessing(size=672)


@pytest.mark.parametrize(
    ("h", "w", "expected"),
    [
        (720, 1280, (378, 672)),  # camera frame: long side to 672, short side floored
        (1280, 720, (672, 378)),
        (1080, 1920, (378, 672)),
        (672, 672, (672, 672)),
        (50, 100, (336, 672)),  # small images are scaled up
        (1, 1000, (1, 672)),  # never zero rows
        (300, 299, (672, 669)),
    ],
)
def test_fit_size_keeps_aspect_and_floors(h: int, w: int, expected: tuple[int, int]) -> None:
    """The fitted size matches the Mllama rule for one tile."""
    assert fit_size(h, w, 672) == expected


def test_fit_size_rejects_empty_images() -> None:
    """An image without pixels is an error, not a division by zero."""
    with pytest.raises(ValueError, match="no pixels"):
        fit_size(0, 10, 672)


def test_wide_frame_is_padded_bottom_with_minus_one() -> None:
    """A 1280x720 frame fills the top 378 rows; the rest is pad value 0, i.e. -1.0 after normalising."""
    frame = np.full((720, 1280, 3), 200, np.uint8)
    px = pixel_values(frame, SPEC)
    assert px.shape == (1, 3, 672, 672)
    assert px.dtype == np.float32
    expected = (200 / 255 - 0.5) / 0.5
    np.testing.assert_allclose(px[0, :, :378, :], expected, atol=1e-6)
    assert (px[0, :, 378:, :] == -1.0).all()


def test_tall_frame_is_padded_right() -> None:
    """A portrait frame sits at the left edge; padding goes to the right."""
    frame = np.full((1280, 720, 3), 255, np.uint8)
    px = pixel_values(frame, SPEC)
    assert (px[0, :, :, :378] == 1.0).all()
    assert (px[0, :, :, 378:] == -1.0).all()


def test_bgr_frames_become_rgb_planes() -> None:
    """OpenCV frames are BGR; the model's channel 0 is red."""
    frame = np.zeros((672, 672, 3), np.uint8)
    frame[:, :, 2] = 255  # red in BGR
    px = pixel_values(frame, SPEC)
    assert (px[0, 0] == 1.0).all()
    assert (px[0, 1] == -1.0).all()
    assert (px[0, 2] == -1.0).all()


def test_resize_is_bicubic_not_nearest() -> None:
    """Downscaling a checkerboard by bicubic averages it towards grey (nearest would keep 0/255)."""
    board = (np.indices((1344, 1344)).sum(axis=0) % 2 * 255).astype(np.uint8)
    tile = resize_and_pad(to_rgb(board), SPEC)
    inner = tile[10:-10, 10:-10].astype(int)
    assert abs(inner.mean() - 127.5) < 2
    assert inner.std() < 20


def test_normalize_uses_mean_and_std() -> None:
    """Pixel value v becomes (v / 255 - mean) / std."""
    spec = Preprocessing(size=2, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    tile = np.array([[[255, 255, 255], [0, 0, 0]], [[51, 51, 51], [102, 102, 102]]], np.uint8)
    x = normalize(tile, spec)
    assert x.shape == (1, 3, 2, 2)
    np.testing.assert_allclose(x[0, :, 0, 0], [1.0, 3.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(x[0, :, 0, 1], [-1.0, -1.0, 0.0], atol=1e-6)


def test_gray_and_bgra_inputs_are_accepted() -> None:
    """Gray frames are repeated to three channels; an alpha channel is dropped."""
    assert to_rgb(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 0] = 9
    assert (to_rgb(bgra)[..., 2] == 9).all()


def test_float_images_are_rejected() -> None:
    """Only uint8 frames are valid input."""
    with pytest.raises(ValueError, match="uint8"):
        to_rgb(np.zeros((4, 4, 3), np.float32))
