"""One home for the text of the parameters that several public functions share.

A docstring names shared parameter blocks by a line holding only ``%(name)s`` or
``%(name, other, ...)s``; :func:`fill_doc` replaces that line by the blocks of
:data:`PARAMETERS`, indented as the line, so that ``help()``, Jupyter's Shift-Tab and the API pages show the full text.
Indented lines after the placeholder continue the block's description (one function's
own remark, such as an alias).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import TypeVar

__all__ = ["PARAMETERS", "fill_doc"]

F = TypeVar("F", bound=Callable)

#: Parameter blocks (numpydoc), by name, shared by :func:`xnormcorre.rigid`,
#: :func:`xnormcorre.pwrigid` and :func:`xnormcorre.estimate_template`.
PARAMETERS: dict[str, str] = {
    "movie": """\
movie : xarray.DataArray or array-like, (time, y, x)
    Movie of any integer or float dtype.  A dask-backed DataArray stays lazy:
    the template is estimated batch by batch and the registration is mapped over
    time chunks.""",
    "template": """\
template : DataArray or ndarray (y, x), optional
    Template to register to; estimated with :func:`estimate_template` if None.""",
    "reference": """\
reference : DataArray or ndarray (time, y, x), optional
    Movie of the same sizes to *estimate* the template and shifts on (a structural
    channel, or a filtered copy such as :func:`xnormcorre.highpass`); the shifts
    are then applied to ``movie``.  ``correlation`` then refers to the registered
    reference, and the result's ``shifts_estimated_on`` attribute names it.  The
    jnormcorre ``register_to_template_and_transfer_rigid`` (``_pwrigid``) step.""",
    "max_shifts": """\
max_shifts : int or (int, int)
    Largest displacement searched along (y, x), in pixels; ``>= 1`` and smaller
    than half the frame.""",
    "upsample_factor": """\
upsample_factor : int
    ``>= 1``; 1 gives integer shifts.  Above 1, shifts are subpixel: the grid of
    the upsampled-DFT refinement (``1/upsample_factor`` px) where it is used
    (``phase_corr=False`` or ``smooth_sigma < 0.75``); the default Gaussian peak
    fit is not limited to a grid.""",
    "frames_per_split": """\
frames_per_split : int
    Frames per split in template estimation (CaImAn's ``num_frames_split``).""",
    "num_splits_to_process": """\
num_splits_to_process : int, optional
    Splits used per template iteration (all if None); drawn with ``seed``.""",
    "niter": """\
niter : int
    Template iterations (default 1; 0 = initial template only).""",
    "max_template_frames": """\
max_template_frames : int or None
    With ``num_splits_to_process=None``, each template iteration registers at most
    ``max(1, max_template_frames // frames_per_split)`` splits (seeded draw), so
    the cost of the template does not grow with the movie; when
    ``max_template_frames`` is smaller than a split, each iteration registers
    ``max_template_frames`` frames evenly spaced through the whole movie instead
    (default 300: on the benchmark movies, the shift accuracy of registering 2000
    frames at a fraction of the cost).
    ``None`` registers every split (jnormcorre/CaImAn).  Movies up to
    ``max_template_frames`` frames are unaffected.  In a piecewise-rigid run the rigid
    iterations that come first register only the 100 frames of the initial sample, and
    the piecewise-rigid iterations follow this bound.""",
    "min_mov": """\
min_mov : float, optional
    Movie floor, the fill value of ``border="min"`` (default: minimum of the first
    400 frames, read only for ``border="min"``).  Registration is invariant to a
    constant offset, so CaImAn's ``add_to_movie = -min_mov`` is not added.""",
    "border": """\
border : {"copy", "nan", "zero", "min"}
    Fill of pixels that moved in from outside the frame: nearest valid value,
    NaN, 0, or ``min_mov``.""",
    "batch_size": """\
batch_size : int, optional
    Frames read from the movie at once (default: about 4 Mpixel).  Each read batch
    is registered in compiled calls of a fixed number of frames set by the frame
    shape, so the results do not depend on ``batch_size``.""",
    "seed": """\
seed : int
    Seed for the split sampling; same input and seed give the same bits.""",
    "phase_corr": """\
phase_corr : bool
    Whiten the cross-power spectrum (phase correlation, as NoRMCorre's
    ``phase_flag`` and suite2p).  Default True: more accurate on movies with
    strong low-frequency background; False gives NoRMCorre/CaImAn's plain
    cross-correlation.""",
    "smooth_sigma": """\
smooth_sigma : float
    Gaussian low-pass (px) applied to the correlation (suite2p's ``smooth_sigma``);
    0 disables it.""",
    "taper": """\
taper : float, optional
    Width (px) of the edge apodization of the (mean-subtracted) template used for
    the estimate (default ``2·max_shift + 2``, at least 4); it keeps the frame
    border from pulling the peak towards zero shift.  0 disables it.""",
    "defects": """\
defects : bool or array (y, x), optional
    Sensor defects (stuck, hot or dead pixels and lines, fixed on the sensor while
    the tissue moves) are found from the movie's temporal statistics and left out
    of the estimate (default True); points that move with the tissue in the
    registered sample are content and are not flagged.  The corrected movie keeps
    the defects' values.
    ``False`` uses every pixel; a boolean mask gives them explicitly.  The mask
    used is returned as ``defect_mask``.""",
    "clip": """\
clip : bool
    Limit each corrected frame to its raw frame's range (default True, as
    NoRMCorre): Fourier or cubic interpolation would otherwise ring below the
    data's minimum and above its maximum next to sharp features (e.g. negative
    values in a uint16 movie).  ``False`` keeps the unclipped interpolation.""",
    "scan_phase": """\
scan_phase : None, "auto", float or DataArray
    Bidirectional scan phase removed before everything else (default None: none).
    The phase is the displacement along x of the odd scan lines' content (rows 1,
    3, 5, ...) relative to the even lines, in px; the correction moves the odd lines
    by ``-phase`` (NoRMCorre's ``col_shift`` and suite2p's ``bidiphase`` are
    ``-phase``).  ``"auto"`` estimates it with :func:`xnormcorre.scan_phase` -- on
    ``reference`` when given, and applies it to both; a number or a DataArray from
    :func:`xnormcorre.scan_phase` (one value, or one per frame) is applied as given.
    The movie is then registered as float32; the correction stays lazy on lazy
    input.  The phase used is returned as ``scan_phase`` (with its method in attrs).""",
    "store": """\
store : str or path, optional
    Zarr store (a folder) that receives the per-frame results (shifts, correlation,
    flags), the template and the parameters one time chunk at a time, as each chunk
    is registered; an in-memory movie is cut into time chunks.  The result is then
    returned with ``corrected`` lazy (the movie moved by the stored shifts, chunk by
    chunk) and everything else in memory.  See "Saving results" in the user guide.""",
    "resume": """\
resume : bool
    Continue the store of an interrupted run (default False: the store must not
    exist): the stored template is used, the movie, template and parameters are
    checked against the store (``ValueError`` naming what differs; the store is
    left untouched) and only the chunks not done are registered.  The result is
    the same, bit for bit, as that of an uninterrupted run.""",
    "aliases": """\
**aliases
    CaImAn/jnormcorre names with the same meaning are accepted: ``border_nan=True``
    (``border="nan"``), ``border_nan="copy"``, ``num_frames_split``
    (``frames_per_split``), ``splits_rig``/``splits_els`` (a number of splits:
    ``frames_per_split = ceil(n_frames / splits)``).  Other unknown keywords raise
    ``TypeError`` naming the closest valid one, or for a CaImAn/jnormcorre/NoRMCorre
    name (``gSig_filt``, ``pw_rigid``, ``shifts_opencv``, ``nonneg_movie``, ...) what
    to write instead.""",
}

_PLACEHOLDER = re.compile(r"^([ \t]*)%\(([\w, ]+)\)s[ \t]*$", re.MULTILINE)


def fill_doc(fn: F) -> F:
    """Replace each line ``%(name)s`` (or ``%(name, other, ...)s``) of ``fn``'s docstring
    by the blocks ``PARAMETERS[name]``, indented as that line; an unknown name raises
    ``KeyError``.

    Examples
    --------
    >>> @fill_doc
    ... def f(seed=0):
    ...     '''Parameters
    ...     ----------
    ...     %(seed, taper)s
    ...     '''
    >>> [line.strip() for line in f.__doc__.splitlines() if " : " in line]
    ['seed : int', 'taper : float, optional']
    """
    if fn.__doc__:  # None under python -OO
        fn.__doc__ = _PLACEHOLDER.sub(_blocks, fn.__doc__)
    return fn


def _blocks(m: re.Match) -> str:
    names = [n.strip() for n in m.group(2).split(",")]
    return textwrap.indent("\n".join(PARAMETERS[n] for n in names), m.group(1))
