"""The ``xnormcorre info`` command: what a movie (or a result) holds, without reading pixels."""

from __future__ import annotations

import argparse
from pathlib import Path

from .output import open_input
from .report import channel_list, fmt_bytes, movie_channel, plural

__all__ = ["info"]


def _acquisition(movie) -> str:
    """The acquisition metadata read from the file: frame rate, zoom, pixel size, scanning."""
    a = movie.attrs
    parts = []
    if "fps" in a:
        parts.append(f"{a['fps']:g} frames/s" + (f" ({a['fps_source']})" if "fps_source" in a else ""))
    if "scan_zoom" in a:
        parts.append(f"zoom {a['scan_zoom']:g}")
    size = [movie[d].attrs.get("pixel_size_um") for d in ("y", "x") if d in movie.coords]
    if all(v is not None for v in size) and size:
        parts.append("pixel " + " x ".join(f"{v:g}" for v in size) + " um")
    if "bidirectional" in a:
        parts.append("bidirectional scanning" if a["bidirectional"] else "unidirectional scanning")
    return ", ".join(parts)


def info(args: argparse.Namespace) -> int:
    import xarray as xr

    first = Path(args.input[0]).expanduser()
    if len(args.input) == 1 and (first.suffix.lower() in (".nc", ".nc4", ".zarr")):
        if not first.exists():
            raise FileNotFoundError(f"{str(first)!r} does not exist")
        opener = xr.open_zarr if first.suffix.lower() == ".zarr" else xr.open_dataset
        ds = opener(first, chunks={}) if opener is xr.open_dataset else opener(first)
        print(f"path:      {first.absolute()}")
        print(f"dataset:   {', '.join(f'{k} {v}' for k, v in ds.sizes.items())}")
        for name, var in ds.data_vars.items():
            print(f"  {name} ({', '.join(map(str, var.dims))}) {var.dtype}")
        if "method" in ds.attrs:
            print(f"method:    {ds.attrs['method']}")
        ds.close()
        return 0
    movie = open_input(args.input, args.chunk, args.dataset, args.channel)
    n, h, w = movie.sizes["time"], movie.sizes["y"], movie.sizes["x"]
    a = movie.attrs
    fmt = a.get("source_format", "?")
    engine = {"TIFF": "xnormcorre_tiff", "HDF5": "xnormcorre_hdf5", "Scanbox": "xnormcorre_sbx"}.get(fmt, "?")
    chunks = movie.chunks[0] if movie.chunks is not None else (n,)
    sources = [str(Path(p).expanduser().absolute()) for p in args.input]
    print(f"path:      {sources[0]}" + (f" (+{len(sources) - 1} more)" if len(sources) > 1 else ""))
    print(
        f"format:    {fmt} (xarray engine {engine})"
        + (f", {plural(a['n_files'], 'file')}" if "n_files" in a else "")
    )
    if "hdf5_dataset" in a:
        print(f"dataset:   {a['hdf5_dataset']}")
    if "channel" in movie.dims:
        print(f"shape:     {n} x {movie.sizes['channel']} x {h} x {w} (time, channel, y, x)")
        print(f"channels:  {movie.sizes['channel']} ({channel_list(movie)}); select one with --channel C")
    else:
        print(f"shape:     {n} x {h} x {w} (time, y, x)")
        if movie_channel(movie):
            print(f"channel:   {movie_channel(movie)}")
    print(f"dtype:     {movie.dtype}")
    print(f"size:      {fmt_bytes(movie.nbytes)}")
    print(f"chunks:    time {max(chunks)} frames ({plural(len(chunks), 'chunk')}), y {h}, x {w}")
    t = movie["time"]
    units = t.attrs.get("units", "")
    units = "" if units == "1" else units
    span = f"{t.values[0]} .. {t.values[-1]}" if n else "-"
    print(f"time:      {span} ({t.attrs.get('long_name', 'time')}{', ' + units if units else ''})")
    acquisition = _acquisition(movie)
    if acquisition:
        print(f"metadata:  {acquisition}")
    movie.close()
    return 0
