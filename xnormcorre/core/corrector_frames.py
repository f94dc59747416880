"""The single-frame path of :class:`xnormcorre.Corrector`: one frame in, NumPy out, at
millisecond latency (:class:`xnormcorre.engine.fast.FrameRegistrar`, compiled once per
frame shape and kept by the corrector)."""

from __future__ import annotations

import numpy as np

__all__ = ["SingleFrames"]


class SingleFrames:
    """The :meth:`shift` and :meth:`correct_frame` methods of a corrector.

    The compiled registrar is made on first use from the corrector's calibrated
    engine parameters for one frame (``_params(1)``); a corrector that is not
    calibrated yet calibrates on that frame first (``_ensure``).
    """

    def _registrar(self, frame):
        if self._fast is None:
            if self._cal is None or (self._opts.border == "min" and self._min_mov is None):
                f = np.asarray(frame)
                if f.shape != self.shape:
                    raise ValueError(f"frame must have the template's shape {self.shape}, got {f.shape}")
                self._ensure(self._movie(f[None], "frame"), None)
            from ..engine.fast import FrameRegistrar

            self._fast = FrameRegistrar(self._params(1), self.template)
        return self._fast

    def shift(self, frame: np.ndarray) -> np.ndarray:
        """The displacement of one frame's content relative to the template (the fast path).

        NumPy in, NumPy out: no labels and no checks beyond the frame's shape and dtype
        (a frame holding NaN gives NaN shifts), compiled once per frame shape.

        Parameters
        ----------
        frame : ndarray (y, x)
            One frame of the template's shape, integer or float.

        Returns
        -------
        ndarray
            ``(2,)`` float32 shift ``(y, x)`` (rigid), or ``(patch_y, patch_x, 2)`` patch
            shifts (piecewise rigid); ``frame(r) ≈ template(r - shift)``.
        """
        return (self._fast or self._registrar(frame)).shift(frame)

    def correct_frame(
        self, frame: np.ndarray, *, reference: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One frame registered and corrected (the fast path, as :meth:`shift`).

        Parameters
        ----------
        frame : ndarray (y, x)
            The frame to correct.
        reference : ndarray (y, x), optional
            The same frame in another channel (or filtered) to estimate the shift on;
            the shift is then applied to ``frame``.

        Returns
        -------
        corrected : ndarray (y, x) float32
            The frame moved by ``-shift`` (read-only).
        shift : ndarray
            As returned by :meth:`shift`.
        """
        reg = self._fast or self._registrar(frame if reference is None else reference)
        out, shift, _ = reg.correct(frame, reference)
        return out, shift
