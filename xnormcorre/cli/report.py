"""What the commands print about a movie and a registration result: sizes, channels, flag
counts, the verdict, the shift ranges."""

from __future__ import annotations

__all__ = [
    "channel_list",
    "describe",
    "flag_counts",
    "fmt_bytes",
    "movie_channel",
    "plane_dim",
    "plural",
    "shift_summary",
    "verdict_line",
]


def channel_list(movie) -> str:
    """``0 'green', 1 'red'`` (the names when the file has them)."""
    n = movie.sizes["channel"]
    names = [str(v) for v in movie["channel_name"].values] if "channel_name" in movie.coords else []
    return ", ".join(f"{i}" + (f" {names[i]!r}" if names else "") for i in range(n))


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def describe(movie) -> str:
    n, h, w = movie.sizes["time"], movie.sizes["y"], movie.sizes["x"]
    chunks = movie.chunks[0] if movie.chunks is not None else (n,)
    channel = f" (channel {movie_channel(movie)})" if movie_channel(movie) else ""
    plane = plane_dim(movie)
    if plane is not None:
        return (
            f"{n} volumes of {movie.sizes[plane]} {plane} planes x {h}x{w} px{channel}, {movie.dtype}, "
            f"time chunks of {max(chunks)} volumes ({plural(len(chunks), 'chunk')})"
        )
    return (
        f"{n} frames of {h}x{w} px{channel}, {movie.dtype}, time chunks of {max(chunks)} frames "
        f"({plural(len(chunks), 'chunk')})"
    )


def movie_channel(movie) -> str:
    """The selected channel of a one-channel view of a multi-channel file (``1 'red'``), or ""."""
    if "channel" not in movie.coords or movie["channel"].ndim:
        return ""
    name = f" {str(movie['channel_name'].values)!r}" if "channel_name" in movie.coords else ""
    return f"{int(movie['channel'].values)}{name}"


def flag_counts(ds) -> str:
    parts = []
    for name in ("at_max_shift", "low_correlation", "patch_jump", "patch_at_max_deviation"):
        if name in ds:
            flag = ds[name]
            if "time" in flag.dims and flag.ndim > 1:
                flag = flag.any([d for d in flag.dims if d != "time"])
            parts.append(f"{int(flag.sum())} {name.replace('_', ' ')}")
    return ", ".join(parts) if parts else "none computed"


def verdict_line(ds) -> str:
    """``verdict: ok`` or ``verdict: SUSPECT: <reasons>`` (wrapped), from the result's attrs."""
    import textwrap

    verdict = ds.attrs.get("qc_verdict")
    if verdict is None:
        return "verdict: not checked (result without qc_verdict)"
    if verdict == "ok":
        return "verdict: ok"
    text = f"verdict: SUSPECT: {ds.attrs.get('qc_warnings', '')}"
    return "\n    ".join(textwrap.wrap(text, width=100))


def shift_summary(ds) -> str:
    sh = ds["rigid_shifts"] if "rigid_shifts" in ds else ds["shifts"]
    ranges = []
    for comp in [str(c) for c in sh["axis"].values]:
        v = sh.sel(axis=comp)
        ranges.append(f"{comp} [{float(v.min()):+.2f}, {float(v.max()):+.2f}]")
    kind = "rigid shifts" if "rigid_shifts" not in ds else "rigid part of the shifts"
    return f"{kind}: {', '.join(ranges)} px; mean correlation with the template {float(ds.correlation.mean()):.3f}"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def plane_dim(movie) -> str | None:
    """The plane dim of a volume or multi-plane movie (``time``, a plane dim, ``y``, ``x``), else None."""
    extra = [d for d in movie.dims if d not in ("time", "y", "x")]
    return extra[0] if movie.ndim == 4 and len(extra) == 1 else None
