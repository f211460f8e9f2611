"""MNIST digit pre/post-processing: the one definition used by training and by the handler.

People send dark ink on light paper, off-centre, at any size; MNIST is white ink on black,
the digit scaled into a 20x20 box and centred by its centre of mass in a 28x28 frame.
`normalize_digit` does to any image what MNIST's authors did to theirs, and training runs
its own digits through the same function, so both sides see the same convention.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image

from handlers.transforms.errors import InputError
from handlers.transforms.images import to_grayscale

SIDE = 28
BOX = 20  # MNIST scales each digit's longer side to 20 px
MEAN, STD = 0.1307, 0.3081  # MNIST's pixel statistics
CLASS_NAMES = [str(digit) for digit in range(10)]
WORKING_SIDE = 128  # large photos are shrunk first: cheaper, and denoising works at one scale
INK_THRESHOLD = 0.2  # after contrast stretch, fainter pixels are paper, noise or shadow
INK_PERCENTILE = 99.5  # the contrast stretch maps this percentile of the ink to full intensity
# Pairs to order (min first) that leave the median of 9 values in position 4 (Devillard's opt_med9).
MEDIAN_OF_9 = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3), (5, 8), (4, 7),
               (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2))
GLYPH_ROWS, GLYPH_COLS = np.indices((BOX, BOX))  # coordinates for the centre of mass of any glyph


def median_3x3(pixels: np.ndarray) -> np.ndarray:
    """PIL's MedianFilter(3) (edges repeated) on uint8 pixels, as whole-array min/max: 20x faster."""
    height, width = pixels.shape
    padded = np.pad(pixels, 1, mode="edge")
    window = [padded[row:row + height, col:col + width] for row in range(3) for col in range(3)]
    for low, high in MEDIAN_OF_9:
        window[low], window[high] = np.minimum(window[low], window[high]), np.maximum(window[low], window[high])
    return window[4]


def rank_filter(pixels: np.ndarray, size: int, extreme) -> np.ndarray:
    """PIL's MinFilter/MaxFilter(size) (edges repeated) with extreme=np.minimum/np.maximum: a square
    window's extreme is the extreme of its rows' extremes, so two 1-D passes suffice."""
    height, width = pixels.shape
    padded = np.pad(pixels, size // 2, mode="edge")
    rows = functools.reduce(extreme, (padded[shift:shift + height] for shift in range(size)))
    return functools.reduce(extreme, (rows[:, shift:shift + width] for shift in range(size)))


def paper_background(gray: np.ndarray) -> np.ndarray:
    """The light falling on the paper without the ink: a grey opening wider than any stroke,
    computed at quarter resolution (its cost grows with the window's size)."""
    height, width = gray.shape
    small = np.asarray(Image.fromarray(gray).resize((max(1, width // 4), max(1, height // 4)), Image.Resampling.BOX))
    size = max(3, (min(small.shape) // 3) | 1)
    opened = rank_filter(rank_filter(small, size, np.minimum), size, np.maximum)
    return np.asarray(Image.fromarray(opened).resize((width, height), Image.Resampling.BILINEAR))


def percentile(values: np.ndarray, q: float) -> np.float32:
    """np.percentile(values.astype(np.float32), q), bit for bit, from a partial sort: numpy's own
    spends 30 us on a 28x28 image, most of it before sorting anything."""
    flat = values.ravel()
    position = (flat.size - 1) * (q / 100)
    below = int(position)
    above = min(below + 1, flat.size - 1)
    low, high = np.partition(flat, (below, above))[[below, above]].astype(np.float32)
    weight, step = position - below, high - low
    return high - step * (1 - weight) if weight >= 0.5 else low + step * weight  # numpy's _lerp


def ink_map(gray: Image.Image) -> np.ndarray:
    """8-bit grayscale -> float ink intensity in [0, 1], ink bright on a zero background.

    A light border means dark ink on paper, so the image is inverted. Uneven light is removed
    by subtracting a grey opening (a white top-hat), then contrast is stretched. Pixels stay
    integers (uint8, int16) until that stretch, so small images such as MNIST's 28x28 cost a few
    array operations.
    """
    if max(gray.size) > WORKING_SIDE:
        gray = gray.copy()
        gray.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(gray)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    middle = (len(border) - 1) // 2, len(border) // 2
    if np.partition(border, middle)[list(middle)].sum(dtype=int) > 2 * 127:  # the border's median > 127
        pixels = 255 - pixels
    if min(pixels.shape) >= 32:  # photos and scans, not MNIST-sized digits
        pixels = median_3x3(pixels)
        ink = pixels.astype(np.int16) - paper_background(pixels)
    else:
        ink = pixels
    peak = percentile(ink, INK_PERCENTILE)
    if peak <= 0:
        return np.zeros(ink.shape, dtype=np.float32)
    ink = np.minimum(ink / peak, 1)
    ink[ink < INK_THRESHOLD] = 0  # negative ink too: no clip at 0 needed
    return ink


def center_in_frame(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink, scale the longer side to 20 px, centre by centre of mass in 28x28."""
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(rows) == 0:
        raise InputError("no digit found: the image is blank", status=422)
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    height, width = crop.shape
    if max(height, width) == BOX:  # already the box's length, as every MNIST digit: resizing would copy it
        glyph = crop * 255
    else:
        scale = BOX / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        resized = Image.fromarray(crop * 255).resize(size, Image.Resampling.LANCZOS)
        glyph = np.clip(np.asarray(resized, dtype=np.float32), 0, 255)  # LANCZOS overshoots
    total = glyph.sum()
    if total == 0:
        raise InputError("no digit found: the image is blank", status=422)
    height, width = glyph.shape
    # Whole-array products summed in one pass: another summation order can move a centre on .5 by a pixel.
    center_row = (GLYPH_ROWS[:height, :width] * glyph).sum() / total
    center_col = (GLYPH_COLS[:height, :width] * glyph).sum() / total
    top = min(max(round(SIDE / 2 - center_row), 0), SIDE - height)
    left = min(max(round(SIDE / 2 - center_col), 0), SIDE - width)
    frame = np.zeros((SIDE, SIDE), dtype=np.uint8)
    frame[top:top + height, left:left + width] = glyph.round()
    return frame


def normalize_digit(image: Image.Image) -> np.ndarray:
    """A decoded image of any size and mode -> uint8 (28, 28) in MNIST's convention."""
    return center_in_frame(ink_map(to_grayscale(image, background=255)))


# The model input of every grey level, computed by the tensor ops it replaces: one lookup per image.
NORMALISED_GREY_LEVELS = torch.arange(256, dtype=torch.float32).div_(255.0).sub_(MEAN).div_(STD).numpy()


def pixels_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (..., 28, 28) -> normalised float (..., 1, 28, 28), the model's input."""
    return torch.from_numpy(NORMALISED_GREY_LEVELS[pixels]).unsqueeze(-3)


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    return pixels_to_tensor(normalize_digit(image))


def probabilities_to_response(probabilities: torch.Tensor) -> dict:
    """Softmax row of 10 -> {"label": d, "probabilities": {"0": p0, ...}}."""
    return {"label": int(probabilities.argmax()),
            "probabilities": dict(zip(CLASS_NAMES, probabilities.tolist()))}
