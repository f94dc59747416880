"""Registration test cases of other projects, as reusable generators with ground truth.

Each generator rebuilds a peer project's own test data from its published test source
(cited per function) and returns an :class:`ExternalCase`: the frames, the true shifts
in xnormcorre's sign convention (displacement of the frame content relative to the
template, ``frame(r) = template(r - shift)``; CaImAn and NoRMCorre report the
correction ``-shift``, scikit-image's ``phase_cross_correlation`` returns the shift
that registers the moving image, also ``-shift``), the template the peer registers
against (None where the peer estimates it), and the tolerance of the peer's own
assertion.

The scikit-image based cases need ``scikit-image`` (its bundled ``camera``,
``lfw_subset`` and ``binary_blobs`` data); they raise ``ImportError`` without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = [
    "ExternalCase",
    "caiman_gen_data",
    "caiman_lfw_pair",
    "image_registration_blob",
    "skimage_blobs_3d",
    "skimage_camera",
]

IMAGE_REGISTRATION_SHIFTS = (1.0, 1.5, -1.25, 8.2, 10.1)
IMAGE_REGISTRATION_SIZES = (99, 100, 101)


@dataclass(frozen=True, eq=False)
class ExternalCase:
    """A peer project's registration test case.

    Attributes
    ----------
    name : str
        Short identifier.
    frames : ndarray (T, H, W) (or (T, Z, Y, X) for volumes) float32
        The moving frames.
    shifts : ndarray (T, ndim) float64
        True displacement of each frame's content relative to ``template`` (or to the
        unmoved scene), ``frame(r) = template(r - shift)``, in pixels.
    template : ndarray or None
        The fixed image the peer registers against; None where the peer estimates
        the template from the movie.
    tolerance : float or None
        The peer's own tolerance on each shift component (px); None where the peer's
        assertion is not a tolerance in pixels (see ``criterion``).
    criterion : str
        The peer's assertion, in words.
    source : str
        ``owner/repo:path`` (and function) the case is rebuilt from.
    max_shifts : tuple of int
        A search range that covers the true shifts (the peer's own where it has one).
    valid : ndarray (T,) bool
        Frames whose shift is determined by the data (False e.g. on a frame without
        any structure); score only these.
    unmoved : ndarray or None
        The frames before motion (same crop), where the peer's movie changes over
        time so that no single template exists; None otherwise.
    """

    name: str
    frames: np.ndarray
    shifts: np.ndarray
    template: np.ndarray | None
    tolerance: float | None
    criterion: str
    source: str
    max_shifts: tuple[int, ...]
    valid: np.ndarray = field(default=None)  # type: ignore[assignment]
    unmoved: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.valid is None:
            object.__setattr__(self, "valid", np.ones(self.frames.shape[0], bool))


def _fourier_shift_real(img: np.ndarray, shift) -> np.ndarray:
    """Move the content of a real image by ``shift`` (periodic, exact for band-limited content)."""
    spec = ndimage.fourier_shift(np.fft.fftn(img), shift)
    return np.fft.ifftn(spec).real


def caiman_gen_data(n_frames: int = 300, *, noise: float = 0.01, seed: int = 5) -> ExternalCase:
    """CaImAn's motion-correction test movie: 4 Gaussian neurons on 40x50 frames.

    Rebuilt from ``flatironinstitute/CaImAn:caiman/tests/test_motion_correction.py``,
    ``gen_data(D=2, noise=.01, T=300, framerate=30, firerate=2., motion=True)``, with
    the same random stream (``np.random.seed(5)``, here a private ``RandomState``):
    4 neurons (Gaussian footprints, sigma 2 px, unit L2 norm) at random centres,
    Bernoulli spikes (2 Hz at 30 Hz) with calcium decay 0.9, background 1, additive
    Gaussian noise ``noise``; the frames (48x58) are moved by a Fourier phase ramp by
    a smooth random trajectory (white noise convolved with an 11-frame box, sigma 2)
    and cropped by 4 px per side to 40x50.  ``noise=0`` gives the noise-free variant.

    CaImAn returns ``shifts`` as the correction (the negative of the displacement);
    here they are the displacement.  CaImAn's test asserts that the mean over axes of
    the correlation between true and estimated shifts exceeds 0.8 (``tolerance`` is
    None).  The first frame(s) before any spike hold no structure (background only)
    and are marked invalid.  CaImAn's ``border_nan='copy'`` fill only touches rows and
    columns within ``ceil(|shift|)`` of the 48x58 edge, all removed by the crop as long
    as ``|shift| < 4`` (asserted).

    Examples
    --------
    >>> case = caiman_gen_data()
    >>> case.frames.shape, case.shifts.shape, case.max_shifts
    ((300, 40, 50), (300, 2), (4, 4))
    """
    t_len = int(n_frames)
    if t_len < 11:
        raise ValueError(f"n_frames must be >= 11 (the trajectory filter is 11 frames), got {n_frames!r}")
    noise = float(noise)
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be finite and >= 0, got {noise!r}")
    rs = np.random.RandomState(int(seed))
    n_neurons, dims, sig, bkgrd, gamma = 4, (40, 50), (2, 2), 1.0, 0.9
    framerate, firerate = 30, 2.0
    centers = np.asarray([[rs.randint(4, x - 4) for x in dims] for _ in range(n_neurons)])
    spikes = rs.rand(n_neurons, t_len) < firerate / float(framerate)
    spikes[:, 0] = 0
    calcium = spikes.astype(np.float32)
    for i in range(1, t_len):
        calcium[:, i] += gamma * calcium[:, i - 1]
    sig_m = np.array(sig)
    correction = -np.transpose([np.convolve(rs.randn(t_len - 10), np.ones(11) / 11 * s) for s in sig_m])
    big = tuple(np.array(dims) + sig_m * 4)
    a = np.zeros(big + (n_neurons,), dtype=np.float32)
    for i in range(n_neurons):
        a[tuple(centers[i] + sig_m * 2) + (i,)] = 1.0
    a = ndimage.gaussian_filter(a, sig + (0,))
    a /= np.sqrt(np.sum(a.reshape((-1, n_neurons), order="F") ** 2, 0))
    yr = a.reshape((-1, n_neurons), order="F").dot(calcium)
    yr += noise * rs.randn(*yr.shape)
    movie = bkgrd + yr.T.reshape((-1,) + big, order="F")
    displacement = -correction  # CaImAn moves frame t by -shifts[t] = the displacement
    if np.abs(displacement).max() >= 4:
        raise ValueError("this seed gives a shift >= 4 px, beyond CaImAn's crop; choose another seed")
    moved = np.array([_fourier_shift_real(img, d) for img, d in zip(movie, displacement, strict=True)])
    frames = moved[:, 4:-4, 4:-4].astype(np.float32)
    return ExternalCase(
        name="caiman_gen_data" if noise else "caiman_gen_data_noise_free",
        frames=frames,
        shifts=displacement.astype(np.float64),
        template=None,
        tolerance=None,
        criterion="mean over axes of corrcoef(true, estimated shifts) > 0.8",
        source="flatironinstitute/CaImAn:caiman/tests/test_motion_correction.py (gen_data)",
        max_shifts=(4, 4),
        valid=calcium.sum(axis=0) > 0,
        unmoved=movie[:, 4:-4, 4:-4].astype(np.float32),
    )


def caiman_lfw_pair(true_shifts: tuple[int, int] = (2, 4)) -> ExternalCase:
    """CaImAn's register-and-apply test pair: a 16x20 crop of a face moved by an integer shift.

    Rebuilt from ``flatironinstitute/CaImAn:caiman/tests/test_motion_correction.py``,
    ``gen_frame_n_templ``: ``img = skimage.data.lfw_subset()[25]``, template
    ``img[4:20, 4:24]``, frame ``img[4-sy:20-sy, 4-sx:24-sx]`` (content displaced by
    ``(sy, sx)``, new content entering from outside).  CaImAn asserts the registered
    shift equals the true one (``assert_allclose`` with its default ``rtol=1e-7``,
    i.e. exact) and, in ``tile_and_correct``, within a relative 0.2.  Needs scikit-image.

    Examples
    --------
    >>> case = caiman_lfw_pair()  # doctest: +SKIP
    >>> case.frames.shape, case.shifts.tolist()  # doctest: +SKIP
    ((1, 16, 20), [[2.0, 4.0]])
    """
    from skimage.data import lfw_subset

    sy, sx = (int(v) for v in true_shifts)
    if not (0 <= sy <= 4 and 0 <= sx <= 4):
        raise ValueError(f"true_shifts must be integers in [0, 4] (the crop margin), got {true_shifts!r}")
    img = lfw_subset()[25].astype(np.float32)
    templ = img[4:20, 4:24]
    frame = img[4 - sy : 20 - sy, 4 - sx : 24 - sx]
    return ExternalCase(
        name="caiman_lfw_pair",
        frames=frame[None].astype(np.float32),
        shifts=np.array([[sy, sx]], dtype=np.float64),
        template=templ.astype(np.float32),
        tolerance=1e-7 * float(np.hypot(sy, sx)),
        criterion="estimated shift equals the true integer shift (assert_allclose, rtol=1e-7)",
        source="flatironinstitute/CaImAn:caiman/tests/test_motion_correction.py (gen_frame_n_templ)",
        max_shifts=(4, 4),
    )


def _check_shift(shift, axes: str) -> np.ndarray:
    """``shift`` as finite float64 numbers, one per axis named in ``axes`` (e.g. "(y, x)")."""
    s = np.asarray(shift, dtype=np.float64)
    n = axes.count(",") + 1
    if s.shape != (n,) or not np.all(np.isfinite(s)):
        raise ValueError(f"shift must be {n} finite numbers {axes}, got {shift!r}")
    return s


def _skimage_case(name: str, ref: np.ndarray, s: np.ndarray, criterion: str) -> ExternalCase:
    """A case of scikit-image's ``phase_cross_correlation`` tests: ``ref`` moved by ``s``
    (:func:`_fourier_shift_real`), tolerance 0.05 px per axis."""
    return ExternalCase(
        name=name,
        frames=_fourier_shift_real(ref, s)[None].astype(np.float32),
        shifts=s[None].copy(),
        template=ref.astype(np.float32),
        tolerance=0.05,
        criterion=criterion,
        source="scikit-image/scikit-image:skimage/registration/tests/test_phase_cross_correlation.py",
        max_shifts=tuple(int(np.ceil(abs(v))) + 1 for v in s),
    )


def skimage_camera(shift: tuple[float, float] = (-2.4, 1.32)) -> ExternalCase:
    """scikit-image's sub-pixel ``phase_cross_correlation`` test: ``camera`` moved by (-2.4, 1.32).

    Rebuilt from ``scikit-image/scikit-image:skimage/registration/tests/
    test_phase_cross_correlation.py`` (``test_subpixel_precision`` and
    ``test_real_input``): the 512x512 ``camera`` image, moved by
    ``scipy.ndimage.fourier_shift`` (periodic: content leaving one edge re-enters at
    the other) and brought back to real values.  ``fourier_shift`` displaces the
    content by ``+shift``, so ``shift`` is our displacement; scikit-image's estimate is
    ``-shift``.  Tolerance 0.05 px (``atol``) per axis.  ``shift=(-7, 12)`` gives its
    pixel-precision case (``test_correlation``, exact).  Needs scikit-image.

    Examples
    --------
    >>> case = skimage_camera()  # doctest: +SKIP
    >>> case.frames.shape, case.tolerance  # doctest: +SKIP
    ((1, 512, 512), 0.05)
    """
    from skimage.data import camera

    s = _check_shift(shift, "(y, x)")
    integer = bool(np.all(s == np.round(s)))
    criterion = "assert_allclose(result, -shift)" if integer else "assert_allclose(result, -shift, atol=0.05)"
    return _skimage_case("skimage_camera", camera().astype(np.float64), s, criterion)


def skimage_blobs_3d(shift: tuple[float, float, float] = (-2.3, 1.7, 5.4), *, seed: int = 0) -> ExternalCase:
    """scikit-image's 3-D sub-pixel test: a 32^3 ``binary_blobs`` volume moved by (-2.3, 1.7, 5.4).

    Rebuilt from ``scikit-image/scikit-image:skimage/registration/tests/
    test_phase_cross_correlation.py`` (``test_3d_input``): ``img_as_float(binary_blobs(
    length=32, n_dim=3))`` moved by ``scipy.ndimage.fourier_shift`` (real part here;
    scikit-image registers the complex spectra).  scikit-image draws the blobs
    unseeded; ``seed`` fixes them.  Tolerance 0.05 px per axis.  ``frames`` is
    ``(1, 32, 32, 32)``, ``shifts`` ``(1, 3)`` ``(z, y, x)``.  Needs scikit-image.

    Examples
    --------
    >>> case = skimage_blobs_3d()  # doctest: +SKIP
    >>> case.frames.shape  # doctest: +SKIP
    (1, 32, 32, 32)
    """
    from skimage.data import binary_blobs

    s = _check_shift(shift, "(z, y, x)")
    vol = binary_blobs(length=32, n_dim=3, rng=int(seed)).astype(np.float64)
    return _skimage_case("skimage_blobs_3d", vol, s, "assert_allclose(result, -shift, atol=0.05)")


def image_registration_blob(
    imsize: int = 100,
    *,
    shifts: tuple[float, ...] = IMAGE_REGISTRATION_SHIFTS,
    n_realizations: int = 1,
    width: float = 3.0,
    amp: float = 1000.0,
    noiseamp: float = 1.0,
    seed: int = 0,
) -> ExternalCase:
    """image_registration's single-Gaussian test: a blob on ``imsize``^2 with unit noise, tol 0.0126 px.

    Rebuilt from ``keflavich/image_registration:image_registration/tests/
    registration_testing.py`` (``make_offset_images`` and ``test_shifts``): a
    noiseless reference ``amp * exp(-r^2 / (2 width^2))`` centred at pixel (50, 50),
    and a moving image with the Gaussian centred at ``(50 + ysh, 50 + xsh)`` plus
    ``Normal(0, noiseamp)`` noise.  The test runs every ``(xsh, ysh)`` in
    ``shifts x shifts`` (``[1, 1.5, -1.25, 8.2, 10.1]``) for sizes 99, 100 and 101, and
    asserts ``|error| < 3 / sqrt(2 pi width^2 amp / noiseamp)`` (= 0.01262 px) on each
    axis.  The noise is drawn unseeded there; ``seed`` fixes it here.  The frames hold
    every shift pair ``n_realizations`` times (one noise draw each), all with the same
    reference.

    Examples
    --------
    >>> case = image_registration_blob(100)
    >>> case.frames.shape, round(case.tolerance, 5), case.shifts[:2].tolist()
    ((25, 100, 100), 0.01262, [[1.0, 1.0], [1.5, 1.0]])
    """
    imsize = int(imsize)
    if imsize < 64:
        raise ValueError(f"imsize must be >= 64 (the blob sits at pixel 50), got {imsize!r}")
    n_realizations = int(n_realizations)
    if n_realizations < 1:
        raise ValueError(f"n_realizations must be >= 1, got {n_realizations!r}")
    rng = np.random.default_rng(int(seed))
    yy, xx = np.indices((imsize, imsize)).astype(np.float64)
    yy -= 50
    xx -= 50
    reference = amp * np.exp(-(xx * xx + yy * yy) / (2.0 * width**2))
    tolerance = 3.0 / np.sqrt(2 * np.pi * width**2 * amp / noiseamp)
    pairs = [(ysh, xsh) for xsh in shifts for ysh in shifts] * n_realizations
    frames = np.empty((len(pairs), imsize, imsize), np.float32)
    for k, (ysh, xsh) in enumerate(pairs):
        frames[k] = rng.standard_normal((imsize, imsize)) * noiseamp + amp * np.exp(
            -((xx - xsh) ** 2 + (yy - ysh) ** 2) / (2.0 * width**2)
        )
    reach = int(np.ceil(max(abs(v) for v in shifts))) + 1
    return ExternalCase(
        name=f"image_registration_blob_{imsize}",
        frames=frames,
        shifts=np.array(pairs, dtype=np.float64),
        template=reference.astype(np.float32),
        tolerance=float(tolerance),
        criterion="|estimated - true| < 3 / sqrt(2 pi width^2 amp / noise) on each axis (0.0126 px)",
        source="keflavich/image_registration:image_registration/tests/registration_testing.py (test_shifts)",
        max_shifts=(reach, reach),
    )
