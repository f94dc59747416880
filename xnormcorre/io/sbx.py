"""Lazy Scanbox backend: ``xr.open_dataset("run_000.sbx", engine="xnormcorre_sbx")``.

A Scanbox (Neurolabware) recording is a raw ``.sbx`` file of uint16 samples plus a
MATLAB ``.mat`` file of the same name holding the ``info`` struct.  The layout, as
read by Scanbox's ``sbxread.m``, sbxreader and suite2p:

- ``info.sz = [rows, columns]`` is the frame size (512 x 796 when absent);
- the channels saved are ``info.chan.nchan`` (Scanbox 3), else ``info.channels``:
  1 = both PMTs (2 channels), 2 (or -1) = PMT 0 only, 3 = PMT 1 only;
- ``info.scanmode`` is 0 for bidirectional, 1 (the default) for unidirectional scanning;
- a volume scan (``info.volscan`` with ``info.otwave`` / ``info.etl_table``) interleaves
  planes frame by frame;
- the file is, in C order, ``(frames x planes, rows, columns, channels)`` and stores
  ``65535 - value``.

The movie is memory-mapped (``numpy.memmap``): nothing is read until pixels are used,
and indexing copies only the selected frames, rows, columns and channels (the channels
of a pixel are adjacent on disk, so the operating system reads both).  The array holds
no open file and pickles, so it works with dask.distributed.  The ``.mat`` file is read
with ``scipy.io.loadmat`` (MATLAB v5/v7) or h5py (v7.3).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from . import _common as cm
from ._lazy import BackendArray, BackendEntrypoint, outer_1vector_getitem
from ._meta import Acquisition, channel_coords, json_safe, positive

__all__ = ["SbxBackendArray", "SbxBackendEntrypoint", "read_sbx_info"]

SBX_EXTENSIONS = (".sbx",)
_MAX = np.uint16(65535)
_DEFAULT_SZ = (512, 796)


# --------------------------------------------------------------------------- the .mat info
def _from_mat5(obj: Any) -> Any:
    """scipy.io.loadmat output (``struct_as_record=False``, squeezed) as dicts, lists and NumPy values."""
    fields = getattr(obj, "_fieldnames", None)
    if fields is not None:
        return {f: _from_mat5(getattr(obj, f)) for f in fields}
    if isinstance(obj, np.ndarray) and obj.dtype == object:
        return [_from_mat5(v) for v in obj.ravel()]
    return obj


def _from_h5(obj: Any) -> Any:
    """A MATLAB v7.3 (HDF5) struct as dicts and NumPy values (MATLAB arrays are stored transposed)."""
    import h5py

    if isinstance(obj, h5py.Group):
        return {k: _from_h5(obj[k]) for k in obj}
    value = obj[()]
    matlab_class = obj.attrs.get("MATLAB_class", b"")
    matlab_class = matlab_class.decode() if isinstance(matlab_class, bytes) else str(matlab_class)
    if obj.attrs.get("MATLAB_empty", 0):
        return np.array([])
    if matlab_class == "char":
        return "".join(chr(c) for c in np.asarray(value).ravel(order="F"))
    if isinstance(value, np.ndarray):
        value = value.T
        return value.item() if value.size == 1 else np.squeeze(value)
    return value


def read_sbx_info(mat_path: str | os.PathLike) -> dict[str, Any]:
    """The Scanbox ``info`` struct of a ``.mat`` file as a dict (MATLAB v5/v7 or v7.3).

    Examples
    --------
    >>> import tempfile, pathlib, scipy.io
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "run.mat"
    >>> scipy.io.savemat(p, {"info": {"sz": [4, 6], "channels": 2, "scanmode": 0}})
    >>> info = read_sbx_info(p)
    >>> info["sz"].tolist(), int(info["channels"]), int(info["scanmode"])
    ([4, 6], 2, 0)
    """
    mat_path = os.fspath(mat_path)
    if cm.hdf5_magic_at(mat_path):
        import h5py

        with h5py.File(mat_path, "r") as f:
            if "info" not in f:
                raise ValueError(f"Scanbox metadata file {mat_path!r} has no 'info' struct")
            return _from_h5(f["info"])
    import scipy.io

    try:
        mat = scipy.io.loadmat(mat_path, squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # scipy raises several types for corrupt files
        raise ValueError(f"{mat_path!r} is not a readable MATLAB file: {exc}") from exc
    if "info" not in mat:
        raise ValueError(f"Scanbox metadata file {mat_path!r} has no 'info' struct")
    return _from_mat5(mat["info"])


def _number(info: dict, *keys: str) -> Any:
    """``info[k1][k2]...`` or None."""
    obj: Any = info
    for k in keys:
        if not isinstance(obj, dict) or k not in obj:
            return None
        obj = obj[k]
    return obj


def _n_planes(info: dict) -> int:
    """Planes of a volume scan, as sbxreader counts them (1 for a plane)."""
    if not positive(info.get("volscan")):
        return 1
    n = 1
    otwave = info.get("otwave")
    if otwave is not None and np.size(otwave) > 0 and np.ndim(otwave) > 0:
        n = int(np.size(otwave))
    etl = info.get("etl_table")
    if etl is not None and np.size(etl) > 0:
        n = int(np.shape(etl)[0]) if np.ndim(etl) > 1 else int(np.size(etl))
    return max(n, 1)


def _channels(info: dict, path: str) -> tuple[int, list[str]]:
    """``(number of channels, their names)``."""
    nchan = _number(info, "chan", "nchan")
    if nchan is not None:
        n = int(nchan)
        return n, ["PMT0", "PMT1"][:n] if n <= 2 else [f"PMT{i}" for i in range(n)]
    code = info.get("channels")
    if code is None:
        raise ValueError(f"Scanbox metadata of {path!r} has neither info.chan.nchan nor info.channels")
    code = int(code)
    table = {1: (2, ["PMT0", "PMT1"]), 2: (1, ["PMT0"]), -1: (1, ["PMT0"]), 3: (1, ["PMT1"])}
    if code not in table:
        raise ValueError(
            f"Scanbox metadata of {path!r} has info.channels = {code}; expected 1 (both PMTs), 2 or -1 "
            "(PMT 0) or 3 (PMT 1)"
        )
    return table[code]


def sbx_acquisition(info: dict, path: str) -> tuple[Acquisition, dict[str, int]]:
    """``(Acquisition, layout)`` with ``layout = {rows, columns, channels, planes}``."""
    sz = info.get("sz")
    rows, cols = (int(v) for v in np.ravel(sz)[:2]) if sz is not None and np.size(sz) >= 2 else _DEFAULT_SZ
    n_channels, names = _channels(info, path)
    planes = _n_planes(info)
    scanmode = info.get("scanmode")
    bidirectional = None if scanmode is None else int(scanmode) == 0
    fps = None
    resfreq, lines = positive(info.get("resfreq")), positive(_number(info, "config", "lines"))
    if resfreq is not None and lines is not None:
        fps = (2.0 if bidirectional else 1.0) * resfreq / lines / planes
    zoom = None
    mag_list, mag = _number(info, "config", "magnification_list"), _number(info, "config", "magnification")
    if mag_list is not None and mag is not None:
        try:
            zoom = positive(np.ravel(np.asarray(mag_list, dtype=object))[int(mag) - 1])
        except (IndexError, TypeError, ValueError):
            zoom = None
    pixel = None
    dx, dy = positive(info.get("dxcal")), positive(info.get("dycal"))
    if dx is not None and dy is not None:
        pixel = (dy, dx)
    elif mag is not None and isinstance(info.get("calibration"), list):
        try:
            cal = info["calibration"][int(mag) - 1]
            cx, cy = positive(cal.get("x")), positive(cal.get("y"))
            pixel = (cy, cx) if cx is not None and cy is not None else None
        except (IndexError, AttributeError, TypeError, ValueError):
            pixel = None
    version = info.get("scanbox_version")
    acq = Acquisition(
        software="Scanbox" + (f" {json_safe(version)}" if version is not None else ""),
        fps=fps,
        fps_source="Scanbox info.resfreq / info.config.lines"
        + (" x 2 (bidirectional)" if bidirectional else ""),
        channel_names=names,
        pixel_size_um=pixel,
        zoom=zoom,
        bidirectional=bidirectional,
        extra={"Scanbox": info},
    )
    return acq, {"rows": rows, "columns": cols, "channels": n_channels, "planes": planes}


# --------------------------------------------------------------------------- the array
class SbxBackendArray(BackendArray):
    """Lazy ``(time, y, x)`` or ``(time, channel, y, x)`` view of a ``.sbx`` file (uint16).

    Memory-maps the file on first use in each process (the map is not pickled); values
    are returned as ``65535 - stored``.  Accepts xarray's ``OUTER_1VECTOR`` indexers.
    """

    def __init__(self, *, path: str, n_frames: int, n_channels: int, frame_shape: tuple[int, int]) -> None:
        self.path = path
        self.n_channels = int(n_channels)
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        h, w = self.frame_shape
        self.shape = (int(n_frames), self.n_channels, h, w) if self.n_channels > 1 else (int(n_frames), h, w)
        self.dtype = np.dtype(np.uint16)
        self._map: np.memmap | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_map"] = None
        return state

    def _memmap(self) -> np.memmap:
        if self._map is None:
            h, w = self.frame_shape
            self._map = np.memmap(
                self.path, dtype="<u2", mode="r", shape=(self.shape[0], h, w, self.n_channels)
            )
        return self._map

    def __getitem__(self, key: Any) -> np.ndarray:
        return outer_1vector_getitem(key, self.shape, self._raw)

    def _raw(self, key: tuple) -> np.ndarray:
        if len(key) == 3:
            kt, ky, kx = key
            kc: Any = 0
        else:
            kt, kc, ky, kx = key
        # file order is (time, y, x, channel); a single index array keeps its axis in place
        data = np.asarray(self._memmap()[kt, ky, kx, kc])
        kept = [
            d for d, k in zip("tyxc", (kt, ky, kx, kc), strict=True) if not isinstance(k, (int, np.integer))
        ]
        order = [kept.index(d) for d in "tcyx" if d in kept]
        return _MAX - data.transpose(order)

    def close(self) -> None:
        """Drop the memory map (it is re-created on the next read)."""
        self._map = None


class SbxBackendEntrypoint(BackendEntrypoint):
    """xarray backend ``xnormcorre_sbx``: a Scanbox ``.sbx`` recording as a lazy movie.

    Parameters of ``xr.open_dataset(filename_or_obj, engine="xnormcorre_sbx", ...)``:

    filename_or_obj : str or path
        The ``.sbx`` file; its ``info`` struct is read from the ``.mat`` file of the
        same name next to it.
    fps : float, optional
        Frame rate (Hz); default: from the metadata (``info.resfreq / info.config.lines``,
        doubled for bidirectional scanning), which makes ``time`` seconds.
    drop_variables : str or list of str, optional
        Variables or coordinates to leave out.

    The Dataset holds ``movie (time, y, x)`` uint16, or ``movie (time, channel, y, x)``
    for two PMT channels (``channel_name`` "PMT0"/"PMT1"), with the acquisition
    metadata in attrs (``fps``, ``bidirectional`` 0/1, ``scan_zoom``,
    ``acquisition_metadata`` JSON) and the pixel size in micrometres on ``y``/``x``
    when the ``.mat`` file has a calibration.  Volume scans raise ``ValueError``.

    Examples
    --------
    >>> import tempfile, pathlib, scipy.io
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> scipy.io.savemat(d / "run.mat", {"info": {"sz": [4, 6], "channels": 2, "scanmode": 1}})
    >>> (65535 - np.arange(3 * 4 * 6, dtype=np.uint16)).tofile(d / "run.sbx")
    >>> ds = xr.open_dataset(d / "run.sbx", engine=SbxBackendEntrypoint)
    >>> ds.movie.dims, int(ds.movie[2, 3, 5])
    (('time', 'y', 'x'), 71)
    >>> ds.close()
    """

    description: ClassVar[str] = "Lazy (time, [channel,] y, x) movies from Scanbox .sbx files (xnormcorre)"
    url: ClassVar[str] = cm.URL
    open_dataset_parameters: ClassVar[tuple[str, ...]] = ("filename_or_obj", "drop_variables", "fps")

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        fps: float | None = None,
    ) -> xr.Dataset:
        """Open a Scanbox movie lazily; see the class docstring for the parameters."""
        fps = cm.check_fps(fps)
        path = cm.engine_path(filename_or_obj, "xnormcorre_sbx", "a .sbx file")
        if not path.lower().endswith(SBX_EXTENSIONS):
            raise ValueError(f"{path!r} is not a Scanbox .sbx file (the name must end in .sbx)")
        cm.check_file(path, "Scanbox")
        mat = os.path.splitext(path)[0] + ".mat"
        if not os.path.isfile(mat):
            raise FileNotFoundError(f"Scanbox metadata file not found: {mat!r} (needed to read {path!r})")
        info = read_sbx_info(mat)
        acq, layout = sbx_acquisition(info, path)
        if layout["planes"] > 1:
            raise ValueError(
                f"Scanbox file {path!r} holds a volume scan ({layout['planes']} planes); Scanbox volume "
                "scans are not read as volumes yet: convert it to a (time, z, y, x) TIFF (ImageJ TZYX) or "
                "HDF5 dataset and open that"
            )
        rows, cols, nchan = layout["rows"], layout["columns"], layout["channels"]
        frame_bytes = rows * cols * nchan * 2
        size = os.path.getsize(path)
        if size % frame_bytes:
            raise ValueError(
                f"Scanbox file {path!r} is truncated or inconsistent with its metadata: {size} bytes is not a "
                f"whole number of frames of {rows} x {cols} px x {nchan} channel(s) ({frame_bytes} bytes each; "
                f"{size // frame_bytes} whole frames and {size % frame_bytes} bytes left over)"
            )
        n_frames = size // frame_bytes
        array = SbxBackendArray(path=path, n_frames=n_frames, n_channels=nchan, frame_shape=(rows, cols))
        multi = nchan > 1
        return cm.backend_dataset(
            array,
            source=path,
            source_format="Scanbox",
            attrs={"n_files": 1} if multi else {"n_files": 1, "channel_name": acq.channel_names[0]},
            preferred_chunks={"time": 1, "channel": 1} if multi else {"time": 1},
            fps=fps,
            acquisition=acq,
            drop_variables=drop_variables,
            channels=channel_coords(nchan, acq.channel_names) if multi else None,
        )

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """True for a path ending in ``.sbx``."""
        path = cm.as_path_or_none(filename_or_obj)
        return path is not None and path.lower().endswith(SBX_EXTENSIONS)
