"""Online (streaming) motion correction with template updates: ``xnormcorre.online``.

NoRMCorre's original online scheme: an initial template from the first
``init_frames`` frames; then each frame, as it arrives, is registered to the current
template and handed back corrected; every ``bin_width`` frames the mean of the bin's
registered frames is added to a buffer and the template becomes the median of the last
``buffer_width`` bin means (``update="running_median"``) or the mean of all bin means so
far (``"running_mean"``).  Everything is deterministic: the same frames give the same
bits.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import numpy as np

from .. import validate as vd
from ..engine.borders import fill_invalid
from ..engine.template import nanmedian
from .corrector import Corrector

__all__ = ["OnlineCorrection", "online"]

UPDATES = ("running_median", "running_mean", None)


def _frame_stream(frames: Any, block: int) -> Iterator[np.ndarray]:
    """Frames one by one: from a ``(time, y, x)`` array-like (read ``block`` frames at a
    time) or from any iterable of ``(y, x)`` frames (a generator, a growing file's reader)."""
    shape = getattr(frames, "shape", None)
    if shape is not None and len(shape) == 3 and hasattr(frames, "__getitem__"):
        n = int(shape[0])
        for a in range(0, n, block):
            yield from np.asarray(frames[a : min(n, a + block)])
        return
    if shape is not None and len(shape) != 3:
        raise ValueError(
            f"frames must be 3-D (time, y, x) or an iterable of 2-D frames, got shape {tuple(shape)}"
        )
    yield from frames


class OnlineCorrection:
    """The iterator :func:`online` returns: ``(corrected, shift)`` per frame, in order.

    Attributes
    ----------
    corrector : Corrector
        The corrector frames are registered with (None before the first frame is read);
        its ``template`` is the current template.
    n_frames : int
        Frames handed back so far.
    n_updates : int
        Template updates so far.
    """

    def __init__(self, frames, *, init_frames, update, bin_width, buffer_width, template, kw):
        self._source = _frame_stream(frames, bin_width)
        self._init_frames = init_frames
        self._update = update
        self._bin_width = bin_width
        self._buffer: deque = deque(maxlen=buffer_width)
        self._sum: np.ndarray | None = None
        self._n_bins = 0
        self._template = template
        self._kw = kw
        self.corrector: Corrector | None = None
        self.n_frames = 0
        self.n_updates = 0
        self._gen = self._run()

    def __iter__(self) -> OnlineCorrection:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        return next(self._gen)

    @property
    def template(self) -> np.ndarray | None:
        """The current template (None before the first frame is read)."""
        return None if self.corrector is None else self.corrector.template

    # ------------------------------------------------------------------ the loop
    def _start(self, head: list) -> Corrector:
        stack = np.stack([np.asarray(f) for f in head])
        if stack.ndim != 3:
            raise ValueError(
                f"frames must be 2-D (y, x) frames of one shape, got frames of shape {stack.shape[1:]}"
            )
        if self._template is None:
            return Corrector.from_frames(stack, **self._kw)
        kw = dict(self._kw)
        if kw["border"] == "min" and kw["min_mov"] is None:
            kw["min_mov"] = float(stack.min())
        return Corrector(self._template, **kw).calibrate(stack)

    def _add(self, acc: np.ndarray, cnt: np.ndarray, out: np.ndarray, shift: np.ndarray) -> None:
        """Add the pixels of a corrected frame that stayed in view to the bin."""
        h, w = out.shape
        s = shift.reshape(-1, 2)
        lo, hi = s.min(axis=0), s.max(axis=0)
        y0, x0 = (min(math.ceil(max(-v, 0.0)), n - 1) for v, n in zip(lo, (h, w), strict=True))
        y1, x1 = (
            max(n - 1 - math.ceil(max(v, 0.0)), a) for v, n, a in zip(hi, (h, w), (y0, x0), strict=True)
        )
        rect = (slice(y0, y1 + 1), slice(x0, x1 + 1))
        blk = out[rect]
        if np.isfinite(blk).all():
            acc[rect] += blk
            cnt[rect] += 1.0
        else:  # border="nan": a pixel of the warp's edge may be NaN
            ok = np.isfinite(blk)
            acc[rect] += np.where(ok, blk, 0.0)
            cnt[rect] += ok

    def _new_template(self, acc: np.ndarray, cnt: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(cnt > 0, acc / np.maximum(cnt, 1.0), np.nan)
        mean = fill_invalid(mean).astype(np.float32)
        if self._update == "running_median":
            self._buffer.append(mean)
            return nanmedian(np.stack(self._buffer))
        self._sum = mean.astype(np.float64) if self._sum is None else self._sum + mean
        self._n_bins += 1
        return (self._sum / self._n_bins).astype(np.float32)

    def _run(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        head = list(islice(self._source, self._init_frames))
        if not head:
            return
        corr = self.corrector = self._start(head)
        shape = corr.shape
        acc = np.zeros(shape, np.float64)
        cnt = np.zeros(shape, np.float64)
        in_bin = 0
        for frame in _chain(head, self._source):
            out, shift = corr.correct_frame(frame)
            self.n_frames += 1
            yield out, shift
            if self._update is None:
                continue
            self._add(acc, cnt, out, shift)
            in_bin += 1
            if in_bin == self._bin_width:
                corr.update_template(self._new_template(acc, cnt))
                self.n_updates += 1
                acc[...] = 0.0
                cnt[...] = 0.0
                in_bin = 0


def _chain(head: list, rest: Iterator) -> Iterator:
    yield from head
    head.clear()  # the initial frames are not kept once registered
    yield from rest


def online(
    frames: Iterable[np.ndarray] | Any,
    *,
    init_frames: int = 200,
    update: str | None = "running_median",
    bin_width: int = 200,
    buffer_width: int = 50,
    template: np.ndarray | None = None,
    max_shifts: int | tuple[int, int] = (6, 6),
    upsample_factor: int = 10,
    border: str = "copy",
    min_mov: float | None = None,
    phase_corr: bool = True,
    smooth_sigma: float = 1.15,
    taper: float | None = None,
    defects: bool | np.ndarray = True,
    clip: bool = True,
    strides: int | tuple[int, int] | None = None,
    overlaps: int | tuple[int, int] = (32, 32),
    max_deviation_rigid: int | tuple[int, int] = 3,
    refine_patches: bool | None = None,
) -> OnlineCorrection:
    """Correct a stream of frames as they arrive, updating the template (NoRMCorre's online mode).

    The first ``init_frames`` frames are read and give the initial template and the
    movie's calibration (sensor defects, noise model, scale), as the batch functions'
    initial template (:func:`xnormcorre.engine.template.initial_template`; or the given
    ``template``, calibrated on them).  Then every frame -- those first ones included
    -- is registered to the current template and handed back corrected, one at a time
    (:meth:`Corrector.correct_frame`).  With ``update``, every ``bin_width`` frames the
    mean of the bin's registered frames (each pixel over the frames in which it stayed
    in view) updates the template: the per-pixel median of the last ``buffer_width``
    bin means (``"running_median"``, NoRMCorre's default) or the mean of all bin means
    so far (``"running_mean"``); ``None`` keeps the initial template.

    Parameters
    ----------
    frames : iterable of ndarray (y, x), or array-like (time, y, x)
        A generator of frames (a camera, a growing file), a NumPy/dask array, a
        DataArray or any frame reader (:func:`xnormcorre.as_movie`).
    init_frames : int
        Frames for the initial template (fewer if the stream ends sooner).
    update : {"running_median", "running_mean", None}
        How the template follows the registered frames.
    bin_width : int
        Frames per bin of the template update.
    buffer_width : int
        Bin means the running median is taken over.
    template : ndarray (y, x), optional
        Initial template (default: estimated from the first ``init_frames`` frames).
    max_shifts, upsample_factor, border, min_mov, phase_corr, smooth_sigma, taper, defects, clip
        As in :func:`xnormcorre.rigid` (``min_mov`` default: the minimum of the first
        ``init_frames`` frames).
    strides, overlaps, max_deviation_rigid, refine_patches
        Given ``strides``, piecewise-rigid registration as :func:`xnormcorre.pwrigid`
        (``refine_patches``: piecewise rigid only; None: pwrigid's default).

    Returns
    -------
    OnlineCorrection
        An iterator of ``(corrected, shift)``: the corrected frame ``(y, x)`` float32
        (read-only) and its shift, ``(2,)`` float32 (rigid) or ``(patch_y, patch_x, 2)``
        (piecewise rigid), the displacement of the frame's content relative to the
        template.  Its ``template`` attribute is the current template, ``corrector``
        the :class:`Corrector` in use.

    Examples
    --------
    >>> import xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=60, shape=(64, 64), max_shift=3, seed=0)
    >>> stream = xnormcorre.online(iter(movie.values), init_frames=20, bin_width=20, max_shifts=6)
    >>> shifts = np.array([shift for frame, shift in stream])
    >>> shifts.shape, stream.n_updates
    ((60, 2), 3)
    """
    init_frames = vd.integer(init_frames, "init_frames")
    bin_width = vd.integer(bin_width, "bin_width")
    buffer_width = vd.integer(buffer_width, "buffer_width")
    if update not in UPDATES:
        raise ValueError(f"update must be one of {UPDATES}, got {update!r}")
    if refine_patches is not None and vd.check_bool(refine_patches, "refine_patches") and strides is None:
        raise ValueError("refine_patches applies to piecewise-rigid registration only: give strides as well")
    if template is not None and np.ndim(template) != 2:
        raise ValueError(f"template must be 2-D (y, x), got shape {np.shape(template)}")
    kw = {
        "max_shifts": max_shifts,
        "upsample_factor": upsample_factor,
        "border": vd.check_border(border),
        "min_mov": min_mov,
        "phase_corr": phase_corr,
        "smooth_sigma": smooth_sigma,
        "taper": taper,
        "defects": defects,
        "clip": clip,
        "strides": strides,
        "overlaps": overlaps,
        "max_deviation_rigid": max_deviation_rigid,
        "refine_patches": None if refine_patches is None else bool(refine_patches),
    }
    return OnlineCorrection(
        frames,
        init_frames=init_frames,
        update=update,
        bin_width=bin_width,
        buffer_width=buffer_width,
        template=template,
        kw=kw,
    )
