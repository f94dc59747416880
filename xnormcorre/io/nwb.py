"""Export of a registration result to NWB (Neurodata Without Borders) with pynwb.

:func:`to_nwb` writes ``processing["ophys"]["MotionCorrection"]`` (an
``ophys.MotionCorrection``) holding a ``CorrectedImageStack``: the corrected movie as a
``TwoPhotonSeries`` streamed chunk by chunk into a compressed HDF5 dataset, a link to the
original series and ``xy_translation``; next to it, in the same processing module, the
template, the run's parameters, the per-frame quality measures and, for piecewise-rigid
results, the patch shifts and the patch grid.

**NWB conventions** (each series' ``description`` repeats them):

* Images are stored ``[time, width, height]`` = ``[time, x, y]`` (NWB's ``TwoPhotonSeries``
  indexing: the first spatial index runs along a row, i.e. over columns), so
  ``series.data[:].transpose(0, 2, 1)`` is xnormcorre's ``(time, y, x)``; the template
  image is ``[x, y]`` likewise.
* ``xy_translation`` holds, per NWB, "the x,y delta necessary to align each frame": the
  correction applied, columns ``(x, y)``.  xnormcorre's ``shifts`` are the displacement
  of the frame's content, so ``xy_translation = -shifts.sel(axis=["x", "y"])``.  Patch
  shifts are stored the same way (correction, ``(x, y)`` components).
"""

from __future__ import annotations

import inspect
import os
import shutil
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr
from tqdm.std import tqdm

from ._docs import fill_doc
from .nwb_build import build
from .nwb_meta import check_result, nwb_dtype, require_pynwb, target_path

__all__ = ["to_nwb", "write_nwb"]


def write_nwb(
    res: xr.Dataset,
    path: str | os.PathLike,
    *,
    movie: xr.DataArray | np.ndarray | None = None,
    original: str | None = None,
    append: bool = False,
    overwrite: bool = False,
    stack_name: str = "CorrectedImageStack",
    session_description: str = "two-photon imaging session, motion-corrected with xnormcorre",
    identifier: str | None = None,
    session_start_time: datetime | None = None,
    subject: Mapping[str, Any] | None = None,
    device: str | Mapping[str, Any] = "Microscope",
    imaging_plane: str | Mapping[str, Any] | None = None,
    rate: float | None = None,
    dtype: Any = None,
    compression: str | None = "gzip",
    compression_opts: Any = 4,
    progress: bool = True,
) -> tuple[Path, dict[str, np.ndarray]]:
    """:func:`to_nwb`, also returning the per-frame variables computed while the movie was written.

    Returns ``(path, values)``: ``values`` maps each per-frame variable of ``res`` other
    than ``corrected`` (``shifts``, ``correlation``, flags...) to its values, so that a
    lazy result is registered once for the file and these (the command line writes them
    to the shifts NetCDF too).
    """
    pynwb = require_pynwb()
    res = check_result(res)
    out_dtype = nwb_dtype(dtype)
    if not isinstance(stack_name, str) or not stack_name or "/" in stack_name:
        raise ValueError(f"stack_name must be a non-empty name without '/', got {stack_name!r}")
    target = target_path(path, append=append, overwrite=overwrite)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part.nwb")
    if compression is None:
        compression_opts = None
    n = res.sizes["time"]
    total = n * (2 if movie is not None else 1)
    kwargs = dict(
        movie=movie,
        original=original,
        stack_name=stack_name,
        device=device,
        imaging_plane=imaging_plane,
        rate=rate,
        dtype=out_dtype,
        compression=compression,
        compression_opts=compression_opts,
    )
    try:
        with tqdm(total=total, unit="frame", desc=f"to_nwb {target.name}", disable=not progress) as bar:
            if append:
                shutil.copy2(target, tmp)
                with pynwb.NWBHDF5IO(tmp, "a") as io:
                    nwbfile = io.read()
                    fill = build(nwbfile, res, bar=bar, **kwargs)
                    io.write(nwbfile)
            else:
                nwbfile = pynwb.NWBFile(
                    session_description=session_description,
                    identifier=identifier or str(uuid.uuid4()),
                    session_start_time=session_start_time or datetime.now().astimezone(),
                    subject=None if subject is None else pynwb.file.Subject(**dict(subject)),
                )
                fill = build(nwbfile, res, bar=bar, **kwargs)
                with pynwb.NWBHDF5IO(tmp, "w") as io:
                    io.write(nwbfile)
        with h5py.File(tmp, "r+") as f:
            values = fill(f)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target, values


@fill_doc
def to_nwb(res: xr.Dataset, path: str | os.PathLike, **options: Any) -> Path:
    """Write a registration result to an NWB file (``ophys.MotionCorrection``), streamed.

    Adds to ``processing["ophys"]``:

    * ``MotionCorrection`` with a ``CorrectedImageStack`` named ``stack_name``:
      ``corrected`` (``TwoPhotonSeries``, the corrected movie written chunk by chunk
      with ``H5DataIO``/``DataChunkIterator``, compressed; a lazy result is registered
      while it is written, so the movie is never whole in memory), ``original`` (link
      to the raw series) and ``xy_translation`` (``TimeSeries`` ``(time, 2)``: the
      correction, columns ``(x, y)``, i.e. ``-shifts`` with x first; for a
      piecewise-rigid result, of its rigid step);
    * ``{stack_name}_template``: ``Images`` with the template as a ``GrayscaleImage``;
    * ``{stack_name}_parameters``: ``DynamicTable`` of the result's attributes (every
      parameter, sign convention, source, versions); also as JSON in
      ``corrected.comments``;
    * ``{stack_name}_correlation``, ``{stack_name}_at_max_shift``, ... : one
      ``TimeSeries`` per other per-frame variable (correlation, quality flags);
    * piecewise-rigid results: ``{stack_name}_patch_shifts`` (``TimeSeries``
      ``(time, patch, 2)``, the correction per patch, ``(x, y)``) and
      ``{stack_name}_patch_grid`` (``DynamicTable``, one row per patch: indices,
      centre and bounds).

    Images are stored ``[time, x, y]`` (NWB's ``[time, width, height]``): read back
    with ``series.data[:].transpose(0, 2, 1)``.

    Parameters
    ----------
    res : xarray.Dataset
        Result of :func:`xnormcorre.rigid` or :func:`xnormcorre.pwrigid`, NumPy or
        dask-backed.
    path : str or path
        The NWB file.  A new file is written under a temporary name in the same folder
        and renamed when complete; with ``append=True`` the existing file is copied to
        a temporary file, extended and renamed over the original (needs free space for
        a copy), so an error never leaves a partial file.
    movie : DataArray or array (time, y, x), optional
        The raw movie, written (streamed, in its dtype) as the acquisition
        ``TwoPhotonSeries`` named ``original`` (default ``"TwoPhotonSeries"``) and
        linked as the stack's ``original``.
    original : str, optional
        Without ``movie``: name of the image series in the file's acquisition to link
        as ``original`` (default: the only one with as many frames as ``res``).  When
        there is none, a ``TwoPhotonSeries`` referring to ``res.attrs["source"]`` as an
        external file is added.
    append, overwrite : bool
        Add to an existing NWB file, or replace an existing file.  Default: a new file
        (``FileExistsError`` if it exists).
    stack_name : str
        Name of the ``CorrectedImageStack`` (and prefix of the objects next to it); use
        different names for several results in one file.
    session_description, identifier, session_start_time
        ``NWBFile`` fields of a new file (identifier: a random UUID; start time: now,
        local time zone).  Ignored with ``append``.
    subject : dict, optional
        ``pynwb.file.Subject`` fields of a new file (``subject_id``, ``species``,
        ``sex``, ``age``...); DANDI and ``nwbinspector`` require a subject.
    device : str or dict
        Name of the device (reused if in the file), or ``Device`` fields.
    imaging_plane : str, dict or None
        Name of an imaging plane in the file, or ``ImagingPlane`` fields for a new one
        (``description``, ``excitation_lambda``, ``indicator``, ``location``,
        ``imaging_rate``, ``grid_spacing``..., and ``optical_channel`` as a dict of
        ``OpticalChannel`` fields).  Default: the original series' plane, the file's
        only plane, or a new plane with unknown indicator, location and wavelengths.
    rate : float, optional
        Frame rate (Hz).  Default: from the ``time`` coordinate when it is in seconds
        (open the movie with ``fps=``; irregular times become timestamps), else from the
        original series in the file, else 1.0 with a warning.
    dtype : dtype, optional
        dtype of the corrected movie (float32 default; an integer dtype rounds and
        clips, NaN -> 0).
    compression, compression_opts
        HDF5 filter of the movies (gzip level 4 by default; None for none).
    %(progress)s

    %(returns_path)s

    Raises
    ------
    FileExistsError, FileNotFoundError
        ``path`` exists (without ``append``/``overwrite``), or is missing with ``append``.
    ValueError
        Names already in the file, no original series to link, a ``movie`` of another
        shape, an invalid ``rate``.

    Examples
    --------
    >>> import pathlib, tempfile, pynwb, xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=20, shape=(64, 64), max_shift=2, fps=30.0)
    >>> res = xnormcorre.rigid(movie, max_shifts=3)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "session.nwb"
    >>> _ = to_nwb(res, path, movie=movie, progress=False)
    >>> with pynwb.NWBHDF5IO(path, "r") as io:
    ...     stack = io.read().processing["ophys"]["MotionCorrection"]["CorrectedImageStack"]
    ...     corrected = stack.corrected.data[:].transpose(0, 2, 1)
    ...     xy = stack.xy_translation.data[:]
    ...     rate = float(stack.corrected.rate)
    >>> bool((corrected == res.corrected.values).all()), rate
    (True, 30.0)
    >>> bool((xy == -res.shifts.sel(axis=["x", "y"]).values).all())
    True
    """
    return write_nwb(res, path, **options)[0]


# one signature for both: help(), Jupyter and the API page show the keywords of write_nwb
to_nwb.__signature__ = inspect.signature(write_nwb).replace(return_annotation="Path")  # type: ignore[attr-defined]
