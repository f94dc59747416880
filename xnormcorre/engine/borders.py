"""Border handling after a shift: which pixels stayed in view, and how the others are filled.

``border`` is one of :data:`xnormcorre.schema.BORDERS`: ``"copy"`` (nearest valid value),
``"nan"``, ``"zero"`` or ``"min"`` (the movie floor ``fill_min``).  JAX for the kernels,
NumPy for :func:`fill_edges` (template estimation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..schema import BORDERS

__all__ = [
    "BORDERS",
    "apply_border",
    "apply_border_nd",
    "apply_border_traced",
    "border_code",
    "border_limits",
    "border_limits_nd",
    "fill_edges",
    "fill_invalid",
    "fill_outside",
    "valid_nd",
]


def border_limits(dy: jax.Array, dx: jax.Array, h: int, w: int):
    """First/last valid row and column after moving the frame by ``-(dy, dx)``."""
    lo_y = jnp.ceil(jnp.maximum(-dy, 0.0)).astype(jnp.int32)
    hi_y = h - 1 - jnp.ceil(jnp.maximum(dy, 0.0)).astype(jnp.int32)
    lo_x = jnp.ceil(jnp.maximum(-dx, 0.0)).astype(jnp.int32)
    hi_x = w - 1 - jnp.ceil(jnp.maximum(dx, 0.0)).astype(jnp.int32)
    # never empty (|shift| < half the frame is validated upstream)
    hi_y = jnp.maximum(hi_y, lo_y)
    hi_x = jnp.maximum(hi_x, lo_x)
    return lo_y, hi_y, lo_x, hi_x


def fill_outside(img: jax.Array, valid: jax.Array, border: str, fill_min: jax.Array) -> jax.Array:
    """Fill the pixels outside ``valid`` with NaN, 0 or ``fill_min`` (``border`` other than "copy")."""
    if border == "nan":
        return jnp.where(valid, img, jnp.nan)
    if border == "zero":
        return jnp.where(valid, img, 0.0)
    if border == "min":
        return jnp.where(valid, img, fill_min)
    raise ValueError(f"border must be one of {BORDERS}, got {border!r}")  # pragma: no cover - validated


def apply_border(
    img: jax.Array, dy: jax.Array, dx: jax.Array, border: str, fill_min: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Replace pixels that wrapped around after a shift by ``-(dy, dx)``.

    Returns the filled image and the boolean validity mask.
    """
    h, w = img.shape
    lo_y, hi_y, lo_x, hi_x = border_limits(dy, dx, h, w)
    rows = jnp.arange(h)[:, None]
    cols = jnp.arange(w)[None, :]
    valid = (rows >= lo_y) & (rows <= hi_y) & (cols >= lo_x) & (cols <= hi_x)
    if border == "copy":
        # nearest valid row, then nearest valid column (selects, no gather)
        top = jax.lax.dynamic_slice_in_dim(img, lo_y, 1, axis=0)
        bottom = jax.lax.dynamic_slice_in_dim(img, hi_y, 1, axis=0)
        img = jnp.where(rows < lo_y, top, jnp.where(rows > hi_y, bottom, img))
        left = jax.lax.dynamic_slice_in_dim(img, lo_x, 1, axis=1)
        right = jax.lax.dynamic_slice_in_dim(img, hi_x, 1, axis=1)
        img = jnp.where(cols < lo_x, left, jnp.where(cols > hi_x, right, img))
    else:
        img = fill_outside(img, valid, border, fill_min)
    return img, valid


def border_code(border: str) -> np.int32:
    """The index of ``border`` in :data:`BORDERS`: the traced form of :func:`apply_border_traced`."""
    return np.int32(BORDERS.index(border))


def apply_border_traced(
    img: jax.Array, dy: jax.Array, dx: jax.Array, code: jax.Array, fill_min: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """:func:`apply_border` with the border given as a traced :func:`border_code`: one
    compiled program serves every border (the copy fill and the constant fills are both
    computed, then selected)."""
    copied, valid = apply_border(img, dy, dx, "copy", fill_min)
    fill = jnp.where(
        code == BORDERS.index("nan"), jnp.nan, jnp.where(code == BORDERS.index("zero"), 0.0, fill_min)
    ).astype(img.dtype)
    out = jnp.where(code == BORDERS.index("copy"), copied, jnp.where(valid, img, fill))
    return out, valid


def fill_edges(img: np.ndarray, lo, hi) -> np.ndarray:
    """Replace the edge strips that frames moved by shifts in ``[lo, hi]`` wrapped into.

    ``lo``/``hi`` are the ``(y, x)`` extremes of the shifts (``lo <= 0 <= hi``); a frame
    moved by ``-shift`` wraps ``ceil(hi)`` rows/columns into the far side and
    ``ceil(-lo)`` into the near side.  They are replaced by the nearest untouched row,
    then column (edge replication, as ``border="copy"``).

    Examples
    --------
    >>> fill_edges(np.arange(16.0).reshape(4, 4), (-1.0, 0.0), (0.0, 0.5))[:, -1].tolist()
    [6.0, 6.0, 10.0, 14.0]
    """
    out = np.array(img, copy=True)
    h, w = out.shape
    lo_y = min(int(np.ceil(-lo[0])), h - 1)
    hi_y = max(h - 1 - int(np.ceil(hi[0])), lo_y)
    lo_x = min(int(np.ceil(-lo[1])), w - 1)
    hi_x = max(w - 1 - int(np.ceil(hi[1])), lo_x)
    out[:lo_y] = out[lo_y]
    out[hi_y + 1 :] = out[hi_y]
    out[:, :lo_x] = out[:, lo_x : lo_x + 1]
    out[:, hi_x + 1 :] = out[:, hi_x : hi_x + 1]
    return out


def fill_invalid(img: np.ndarray) -> np.ndarray:
    """Replace NaN pixels by the value of the nearest finite pixel (all-NaN: zeros).

    Examples
    --------
    >>> fill_invalid(np.array([[np.nan, 1.0, 2.0], [np.nan, np.nan, 3.0]])).tolist()
    [[1.0, 1.0, 2.0], [1.0, 1.0, 3.0]]
    """
    from scipy import ndimage

    out = np.array(img, copy=True)
    bad = ~np.isfinite(out)
    if not bad.any():
        return out
    if bad.all():
        return np.zeros_like(out)
    _, idx = ndimage.distance_transform_edt(bad, return_indices=True)  # any number of axes
    return out[tuple(idx)]


# --------------------------------------------------------------------------- n dimensions
def border_limits_nd(shift: jax.Array, shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """:func:`border_limits` for any number of axes: the first and last valid index along
    each axis ``(lo, hi)`` (int32 vectors) after moving the image by ``-shift``."""
    n = jnp.asarray(shape, jnp.int32)
    lo = jnp.ceil(jnp.maximum(-shift, 0.0)).astype(jnp.int32)
    hi = n - 1 - jnp.ceil(jnp.maximum(shift, 0.0)).astype(jnp.int32)
    return lo, jnp.maximum(hi, lo)


def valid_nd(lo: jax.Array, hi: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Boolean mask of the box ``lo <= index <= hi`` (per axis) in an image of ``shape``."""
    valid = jnp.ones(shape, bool)
    for ax, n in enumerate(shape):
        i = jnp.arange(n).reshape((-1,) + (1,) * (len(shape) - 1 - ax))
        valid = valid & (i >= lo[ax]) & (i <= hi[ax])
    return valid


def apply_border_nd(
    img: jax.Array, shift: jax.Array, border: str, fill_min: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """:func:`apply_border` for any number of axes (e.g. a volume moved by ``-shift``):
    the filled image (``"copy"``: nearest valid value, one axis after the other) and the
    validity mask."""
    shape = img.shape
    lo, hi = border_limits_nd(shift, shape)
    valid = valid_nd(lo, hi, shape)
    if border != "copy":
        return fill_outside(img, valid, border, fill_min), valid
    for ax, n in enumerate(shape):
        i = jnp.arange(n).reshape((-1,) + (1,) * (len(shape) - 1 - ax))
        first = jax.lax.dynamic_slice_in_dim(img, lo[ax], 1, axis=ax)
        last = jax.lax.dynamic_slice_in_dim(img, hi[ax], 1, axis=ax)
        img = jnp.where(i < lo[ax], first, jnp.where(i > hi[ax], last, img))
    return img, valid
