"""Same input, same bits, call after call, at the frame sizes of real movies.

XLA's multi-threaded FFT rounds a transform differently depending on how its threads
split the work; the kernels are compiled without it (``kernel_jit``).  These checks
repeat one compiled call on the same frames: with the multi-threaded FFT they differed
in the last bit in most runs on two cores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from xnormcorre.engine import compile_cache
from xnormcorre.engine.fourier import fourier_shift

REPEATS = 12


def _repeat(fn, *args) -> list[np.ndarray]:
    return [np.asarray(fn(*args)) for _ in range(REPEATS)]


def test_kernel_jit_compiles_without_multithreaded_fft():
    assert compile_cache.COMPILER_OPTIONS == {"xla_cpu_multi_thread_eigen": False}


def test_fourier_shift_of_a_batch_gives_the_same_bits_every_call():
    rng = np.random.default_rng(0)
    frames = jnp.asarray(rng.normal(size=(8, 512, 512)).astype(np.float32))
    spec = jnp.fft.rfft2(frames)

    @compile_cache.kernel_jit
    def shift(s):
        return jax.vmap(lambda q: fourier_shift(q, 0.3, -0.2, (512, 512)))(s)

    outs = _repeat(shift, spec)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_rigid_kernel_gives_the_same_bits_every_call():
    from xnormcorre.engine import rigid as er
    from xnormcorre.engine.config import make_rigid_params

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:512, :512]
    tmpl = (np.sin(yy / 7.0) * np.cos(xx / 5.0) + 2.0).astype(np.float32)
    frames = (tmpl[None] + 0.1 * rng.normal(size=(8, 512, 512))).astype(np.float32)
    params = make_rigid_params((512, 512), max_shifts=(6, 6), n_frames=8)
    arrays = er.kernel_arrays(params, tmpl)
    kw = params.kernel_kwargs()

    def run(batch):
        shifts, out, corr = er.register_batch(batch, tmpl, np.float32(0), *arrays, **kw)
        return np.concatenate([np.asarray(shifts).ravel(), np.asarray(out).ravel(), np.asarray(corr)])

    outs = _repeat(run, frames)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
