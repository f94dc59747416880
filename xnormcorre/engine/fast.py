"""One frame at a time: the low-latency path of a reusable corrector (NumPy in, NumPy out).

:class:`FrameRegistrar` holds a template's kernel constants on the device and runs the
rigid or piecewise-rigid kernels of :mod:`xnormcorre.engine.rigid` /
:mod:`xnormcorre.engine.pwrigid` on a batch of one frame, in a single compiled call per
frame (compiled once per frame shape and parameters): no labels, no validation beyond
the frame's shape, no host-device copies of the constants, and no padding of the batch
to the kernel batch of the batch drivers.

The numbers are the batch kernels' (same computation); a batch of one frame may round
differently in the last bits from a frame registered in a lane of a larger batch (XLA
vectorizes differently), so the shifts agree with :func:`register_frames` to float32
rounding, not bit for bit.  Never imports xarray.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import compile_cache
from . import pwrigid as _pw
from . import rigid as _rigid
from . import warp as _warp
from .config import Params, PwParams, RigidParams

compile_cache.enable()

__all__ = ["FrameRegistrar"]


def _static(kw: dict) -> tuple:
    """Kernel keyword arguments as a hashable (static) tuple."""
    return tuple(sorted(kw.items()))


@compile_cache.kernel_jit(static_argnames=("rkw", "apply"))
def _rigid_frame(frame, ref, consts, *, rkw, apply):
    """Shift of ``ref`` (``(H, W)``) and, if ``apply``, ``frame`` moved by it."""
    tmpl, fill, window, weight, refine, defects, scale = consts
    kw = dict(rkw)
    shift = _rigid.register_batch(
        ref[None], tmpl, fill, window, weight, refine, defects, scale, apply=False, **kw
    )
    if not apply:
        return shift[0]
    out = _rigid.shift_batch(frame[None], shift, fill, scale, border=kw["border"], clip=kw["clip"])
    return shift[0], out[0]


@compile_cache.kernel_jit(static_argnames=("rkw", "apply"))
def _rigid_same(frame, consts, *, rkw, apply):
    """Shift of ``frame`` and, if ``apply``, the frame moved by it (one kernel)."""
    tmpl, fill, window, weight, refine, defects, scale = consts
    out = _rigid.register_batch(
        frame[None],
        tmpl,
        fill,
        window,
        weight,
        refine,
        defects,
        scale,
        apply=apply,
        with_corr=False,
        **dict(rkw),
    )
    if not apply:
        return out[0]
    return out[0][0], out[1][0]


@compile_cache.kernel_jit(static_argnames=("rkw", "pkw", "apply", "same"))
def _pw_frame(frame, ref, consts, pconsts, prefine, *, rkw, pkw, apply, same):
    """Rigid shift, patch shifts of ``ref`` and, if ``apply``, ``frame`` warped by them."""
    tmpl, fill, window, weight, refine, defects, scale = consts
    pwindow, pweight, wy, wx = pconsts
    kw = dict(pkw)
    rs = _rigid.register_batch(
        ref[None], tmpl, fill, window, weight, refine, defects, scale, apply=False, **dict(rkw)
    )
    args = (rs, tmpl, fill, pwindow, pweight, wy, wx, defects, scale, prefine)
    if not apply:
        return rs[0], _pw.register_pw_batch(ref[None], *args, apply=False, **kw)[0]
    if same:
        ps, out, _ = _pw.register_pw_batch(frame[None], *args, apply=True, with_corr=False, **kw)
        return rs[0], ps[0], out[0]
    ps = _pw.register_pw_batch(ref[None], *args, apply=False, **kw)
    out = _warp.warp_batch(frame[None], ps, fill, wy, wx, border=kw["border"], clip=kw["clip"])
    return rs[0], ps[0], out[0]


class FrameRegistrar:
    """Register single frames to a template with calibrated pass parameters ``params``.

    Parameters
    ----------
    params : RigidParams or PwParams
        Calibrated parameters of the pass (:meth:`RigidParams.calibrated`).
    template : ndarray (H, W)
        The template; :meth:`set_template` replaces it (same shape: no recompilation).

    Examples
    --------
    >>> from xnormcorre.engine.config import make_rigid_params
    >>> from scipy import ndimage
    >>> tmpl = ndimage.gaussian_filter(np.random.default_rng(0).normal(size=(48, 48)), 1.5)
    >>> reg = FrameRegistrar(make_rigid_params((48, 48), max_shifts=(4, 4)), tmpl)
    >>> frame = np.roll(tmpl, (2, -1), axis=(0, 1))  # content moved by (+2, -1)
    >>> np.round(reg.shift(frame), 1).tolist()
    [2.0, -1.0]
    """

    def __init__(self, params: Params, template: np.ndarray):
        self.params = params
        self.piecewise = isinstance(params, PwParams)
        rigid: RigidParams = params.rigid
        self.shape = tuple(np.shape(template))
        self._rkw = _static(rigid.kernel_kwargs())
        if self.piecewise:
            self._pkw = _static(params.kernel_kwargs())
            self._pconsts = jax.device_put(
                tuple(
                    np.asarray(a, np.float32) for a in (params.pwindow, params.pweight, params.wy, params.wx)
                )
            )
        self.set_template(template)

    def set_template(self, template: np.ndarray) -> None:
        """Register to ``template`` from now on (its kernel constants computed once, here)."""
        tmpl = np.asarray(template, np.float32)
        if tmpl.shape != self.shape:
            raise ValueError(f"template must have the frame shape {self.shape}, got {tmpl.shape}")
        arrays = _rigid.kernel_arrays(self.params.rigid, tmpl)
        self.template = tmpl
        self._consts = jax.device_put((tmpl, np.float32(self.params.fill_min), *arrays))
        if self.piecewise:
            self._prefine = jax.device_put(_pw.patch_constants(tmpl, self.params))

    def _frame(self, frame) -> jax.Array | np.ndarray:
        if isinstance(frame, jax.Array) and frame.dtype == jnp.float32:
            arr = frame
        else:
            arr = np.asarray(frame)
            if arr.dtype.kind not in "iuf":
                raise TypeError(f"frame must have an integer or floating dtype, got {arr.dtype}")
            arr = arr.astype(np.float32, copy=False)
        if arr.shape != self.shape:
            raise ValueError(f"frame must have the template's shape {self.shape}, got {tuple(arr.shape)}")
        return arr

    def shift(self, frame) -> np.ndarray:
        """Displacement of ``frame`` relative to the template: ``(2,)`` (rigid) or
        ``(Ny, Nx, 2)`` patch shifts (piecewise rigid), float32."""
        f = self._frame(frame)
        if self.piecewise:
            out = _pw_frame(
                f,
                f,
                self._consts,
                self._pconsts,
                self._prefine,
                rkw=self._rkw,
                pkw=self._pkw,
                apply=False,
                same=True,
            )
            return np.asarray(out[1])
        return np.asarray(_rigid_same(f, self._consts, rkw=self._rkw, apply=False))

    def correct(self, frame, reference=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(corrected, shift, rigid_shift)`` of ``frame``; the shift is estimated on
        ``reference`` (a frame of another channel) if given, and applied to ``frame``.

        ``shift`` is ``(2,)`` (rigid) or ``(Ny, Nx, 2)`` (piecewise rigid; ``rigid_shift``
        is then the frame's rigid shift, otherwise ``shift`` itself).
        """
        f = self._frame(frame)
        r = f if reference is None else self._frame(reference)
        if self.piecewise:
            rs, ps, out = _pw_frame(
                f,
                r,
                self._consts,
                self._pconsts,
                self._prefine,
                rkw=self._rkw,
                pkw=self._pkw,
                apply=True,
                same=reference is None,
            )
            return np.asarray(out), np.asarray(ps), np.asarray(rs)
        if reference is None:
            shift, out = _rigid_same(f, self._consts, rkw=self._rkw, apply=True)
        else:
            shift, out = _rigid_frame(f, r, self._consts, rkw=self._rkw, apply=True)
        shift = np.asarray(shift)
        return np.asarray(out), shift, shift
