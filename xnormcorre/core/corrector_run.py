"""The registration pass of a :class:`xnormcorre.Corrector` over a movie (its
:meth:`~xnormcorre.Corrector.correct` and :meth:`~xnormcorre.Corrector.lazy` methods), and
its result Dataset, built as :func:`xnormcorre.rigid` / :func:`xnormcorre.pwrigid` build theirs."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from .. import validate as vd
from ..engine.config import Calibration
from ..engine.runner import kernel_batch
from ..qc.diagnose import conclude
from .grid import patch_grid
from .movie import check_reference, register_lazily
from .options import Options
from .pwrigid import pwrigid
from .result import base_dataset, finish, template_da
from .rigid import rigid

__all__ = [
    "PW_KEYWORDS",
    "RIGID_KEYWORDS",
    "Movies",
    "correction_comment",
    "corrector_result",
    "register_frames",
]

#: Keywords of rigid()/pwrigid() that are not registration options of the corrector.
_NOT_OPTIONS = ("movie", "template", "reference", "defects", "clip", "scan_phase")


def _defaults(fn) -> dict[str, Any]:
    return {
        k: p.default
        for k, p in inspect.signature(fn).parameters.items()
        if k not in _NOT_OPTIONS and p.default is not inspect.Parameter.empty
    }


#: Every keyword of rigid()/pwrigid() with its default (template estimation included:
#: recorded in the results as the batch functions record them).
RIGID_KEYWORDS = _defaults(rigid)
PW_KEYWORDS = _defaults(pwrigid)


def correction_comment(piecewise: bool, border: str) -> str:
    """The ``comment`` of the corrected movie."""
    return (sc.PW_COMMENT if piecewise else sc.RIGID_COMMENT) + border


def register_frames(
    movie: xr.DataArray, ref: xr.DataArray | None, template: np.ndarray, params, piecewise: bool
):
    """The registration over time chunks, as the batch functions run it:
    ``(corrected, shifts, correlation)``, piecewise rigid ``(corrected, rigid shifts,
    patch shifts, correlation)``."""
    shifts: dict[tuple[str, ...], tuple[int, ...]] = {(sc.DIM_AXIS,): (2,)}
    if piecewise:
        ny, nx = params.grid_shape
        shifts[(*sc.PATCH_DIMS, sc.DIM_AXIS)] = (ny, nx, 2)
    return register_lazily(movie, ref, template, params, shifts)


def corrector_result(
    movie: xr.DataArray,
    ref: xr.DataArray | None,
    template: np.ndarray,
    opts: Options,
    params,
    cal: Calibration | None,
    min_mov: float | None,
    piecewise: bool,
) -> xr.Dataset:
    """The result Dataset of :meth:`xnormcorre.Corrector.correct`: ``movie`` registered to
    ``template`` with the calibrated engine ``params`` of the options ``opts``."""
    tmpl_da = template_da(movie, template, "user")
    outputs = register_frames(movie, ref, template, params, piecewise)
    min_mov = min_mov if opts.border == "min" else opts.min_mov
    ds = base_dataset(movie, outputs[0], outputs[-1], tmpl_da, correction_comment(piecewise, opts.border))
    run: dict[str, Any] = {"max_shifts": opts.max_shifts}
    if piecewise:
        rigid_shifts, pshifts = outputs[1], outputs[2]
        ds = ds.assign_coords(patch_grid(template.shape, opts.strides, opts.overlaps).coords)
        ds[sc.SHIFTS] = xr.DataArray(pshifts, attrs=dict(sc.PW_SHIFT_ATTRS))
        ds[sc.RIGID_SHIFTS] = xr.DataArray(
            rigid_shifts, attrs=sc.with_frame_size(sc.RIGID_SHIFTS_ATTRS, template.shape)
        )
        run.update(
            strides=opts.strides,
            overlaps=opts.overlaps,
            max_deviation_rigid=opts.max_deviation_rigid,
            refine_patches=opts.refine_patches,
            upsample_factor=opts.upsample_factor,
            upsample_factor_grid=opts.upsample_factor_grid,
            frames_per_split=opts.frames_per_split,
            num_splits_to_process_rig=opts.num_splits_to_process,
            niter_rig=opts.niter,
            num_splits_to_process_els=opts.num_splits_to_process_els,
            niter_els=opts.niter_els,
        )
        clip = params.rigid.clip
    else:
        ds[sc.SHIFTS] = xr.DataArray(outputs[1], attrs=sc.with_frame_size(sc.SHIFT_ATTRS, template.shape))
        run.update(
            upsample_factor=opts.upsample_factor,
            frames_per_split=opts.frames_per_split,
            num_splits_to_process=opts.num_splits_to_process,
            niter=opts.niter,
        )
        clip = params.clip
    run.update(
        max_template_frames=opts.max_template_frames,
        min_mov=min_mov,
        border=opts.border,
        batch_size=params.batch_size,
        seed=opts.seed,
        clip=clip,
        scan_phase=None,  # a corrector takes frames as they are (correct the scan phase first)
        **opts.estimator(),
    )
    method = sc.PWRIGID if piecewise else sc.RIGID
    ds = finish(ds, method, run, movie, ref, tmpl_da, opts.max_shifts)
    return conclude(ds, cal, None, opts.max_shifts)


class Movies:
    """The :meth:`correct` and :meth:`lazy` methods of a corrector: a movie registered to
    its template with its calibrated engine parameters for the movie's length
    (``_params``), the corrector calibrating on the movie first if it is not calibrated
    yet (``_ensure``); ``_movie`` checks the frames' shape."""

    def correct(self, frames, *, reference=None) -> xr.Dataset:
        """Register ``frames`` to the template: a result Dataset as :func:`xnormcorre.rigid`
        (or :func:`xnormcorre.pwrigid`) returns it.

        Parameters
        ----------
        frames : DataArray, ndarray or frame reader, (time, y, x)
            Frames of the template's shape (anything :func:`xnormcorre.as_movie` takes);
            a dask-backed movie stays lazy.
        reference : DataArray or ndarray (time, y, x), optional
            Frames of the same sizes to estimate the shifts on (another channel, or a
            filtered copy); the shifts are applied to ``frames``.

        Returns
        -------
        xarray.Dataset
            ``corrected``, ``shifts``, ``correlation``, ``template``, the quality flags,
            ``defect_mask`` and the attrs of a :func:`xnormcorre.rigid` result
            (``template_source="user"``).
        """
        movie = self._movie(frames)
        vd.check_finite(movie, "frames")
        ref = check_reference(reference, movie)
        self._ensure(movie, ref)
        params = self._params(movie.sizes[sc.DIM_TIME])
        return corrector_result(
            movie, ref, self.template, self._opts, params, self._cal, self._min_mov, self.piecewise
        )

    def lazy(self, movie, *, reference=None, chunks: int | None = None) -> xr.DataArray:
        """The corrected movie, dask-backed: each time chunk is registered when it is read.

        Reading frame ``i`` (``lazy.isel(time=i).values``) registers only the chunk that
        holds it; every chunk gives the same bits as :meth:`correct`.

        Parameters
        ----------
        movie : DataArray, ndarray or frame reader, (time, y, x)
        reference : optional
            As in :meth:`correct`.
        chunks : int, optional
            Frames per time chunk: default the movie's own chunks if it is dask-backed,
            otherwise the frames of one compiled kernel call
            (:func:`xnormcorre.engine.runner.kernel_batch`: 64 at 128², 16 at 256²).

        Notes
        -----
        A corrector that is not calibrated yet calibrates here, reading up to 100
        frames of ``movie`` (:meth:`calibrate`).
        """
        mv = self._movie(movie, "movie")
        ref = check_reference(reference, mv)
        self._ensure(mv, ref)
        if chunks is not None or mv.chunks is None:
            t = vd.integer(chunks, "chunks") if chunks is not None else kernel_batch(self.shape)
            mv = mv.chunk({sc.DIM_TIME: t})
            ref = None if ref is None else ref.chunk({sc.DIM_TIME: t})
        params = self._params(mv.sizes[sc.DIM_TIME])
        out = register_frames(mv, ref, self.template, params, self.piecewise)[0]
        da = xr.DataArray(
            out,
            coords=dict(mv.coords),
            name=sc.CORRECTED,
            attrs=sc.corrected_attrs(
                mv.attrs.get("units", "a.u."), correction_comment(self.piecewise, self._opts.border)
            ),
        )
        return da
