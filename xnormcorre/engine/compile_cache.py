"""Persistent compilation cache for the JAX kernels.

JAX compiles each kernel once per process and frame shape; in a fresh process that
costs seconds (more than the registration itself on short movies).  JAX's persistent
compilation cache stores the compiled programs on disk, so that later processes load
them instead of compiling again.  :func:`enable` turns it on, once per process,
before the first kernel compiles:

- location: ``$XNORMCORRE_JAX_CACHE`` if it names a directory, otherwise
  ``$XDG_CACHE_HOME/xnormcorre/jax`` (``~/.cache/xnormcorre/jax``);
- opt-out: ``XNORMCORRE_JAX_CACHE=0`` (or ``off``, ``false``, ``no``) leaves JAX's
  configuration untouched;
- a cache directory already configured in JAX (``jax.config.update(
  "jax_compilation_cache_dir", ...)`` or ``JAX_COMPILATION_CACHE_DIR``) is used as it
  is, and ``jax_enable_compilation_cache=False`` is respected: nothing is changed.

JAX has one cache per process: once enabled, other JAX programs of the same process
are cached in the same directory.  Entries are keyed by the program, the JAX/jaxlib
version, the XLA flags and the device, so an upgrade never loads a stale program.

Concurrent processes: by itself JAX (0.10) writes an entry with a single ``write_bytes``
to its final name, not by an atomic rename, and takes no lock, so a process may read an
entry another process is still writing.  xnormcorre therefore bounds the cache
(``jax_compilation_cache_max_size``, :data:`MAX_BYTES` unless the user set a size), which
makes JAX take a file lock (the ``filelock`` package) around every read and write of an
entry and evict the least recently used entries beyond the bound.  Without ``filelock``
the cache is left unbounded and unlocked; a truncated entry then fails its decompression
check, JAX warns ("Error reading persistent compilation cache entry") and compiles the
program itself.  An entry left damaged by a writer that was killed mid-write keeps
producing that warning: delete the cache directory (it is rebuilt on the next run).

Memory maps: XLA's CPU backend keeps a few hundred memory mappings (the code and data
sections of the program) for each compiled program as long as JAX caches it, and Linux
caps the mappings of a process (``vm.max_map_count``, usually 65,530); past the cap,
loading the next program aborts the process.  A long-lived process that registers many
different frame shapes or parameter sets (a parameter sweep in a notebook, a test suite)
can get there.  :func:`release_if_crowded`, run before each pass of kernels, drops
JAX's in-memory compiled programs when the process holds more than
:data:`MAP_SHARE` of the cap (they are compiled again, or loaded from this cache, when
next needed).

Same input, same bits: every kernel is compiled by :func:`kernel_jit`, with XLA's
``xla_cpu_multi_thread_eigen`` off.  XLA's multi-threaded FFT rounds a transform
differently depending on how its threads happen to split the work, so the same frames
could give results that differ in the last bit from one call to the next (shifts by
~1e-5 px at 512 x 512).  With it off, each FFT or matrix product runs on one thread;
the kernel thread pool (:func:`xnormcorre.engine.runner.kernel_threads`) keeps the cores
busy by running several kernel calls at once.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from functools import partial, wraps
from pathlib import Path

#: XLA compiler options of every kernel (:func:`kernel_jit`): no multi-threaded FFTs or
#: matrix products, whose results depend on how their threads split the work.
COMPILER_OPTIONS = {"xla_cpu_multi_thread_eigen": False}

#: Environment variable: a directory for the cache, or ``0``/``off`` to disable it.
ENV_VAR = "XNORMCORRE_JAX_CACHE"
#: Values of an environment variable that turn an xnormcorre setting off (any case).
OFF_VALUES = frozenset({"0", "off", "false", "no", "none", "disable", "disabled"})

# JAX's defaults for the thresholds; values that differ were set by the user and are kept.
_JAX_DEFAULT_MIN_COMPILE_SECS = 1.0
_JAX_DEFAULT_MIN_ENTRY_BYTES = 0

#: Bound of the cache directory set when the user has not chosen one (bytes); a bound
#: is what makes JAX lock the cache's entries against concurrent processes.
MAX_BYTES = 2 * 1024**3
#: JAX's default: no bound (and no lock).
_JAX_DEFAULT_MAX_SIZE = -1

#: Share of the process's memory-map cap (``vm.max_map_count``) beyond which
#: :func:`release_if_crowded` drops JAX's in-memory compiled programs.
MAP_SHARE = 0.5
#: Seconds between two counts of the process's memory maps (a count reads
#: ``/proc/self/maps``: about 2 ms per 5,000 maps).
_MAP_CHECK_SECONDS = 1.0
_MAP_LOCK = threading.Lock()
_MAP_LAST = [-float("inf")]

_LOCK = threading.Lock()
_DONE = False
_RESULT: Path | None = None


def kernel_jit(fun=None, **kwargs):
    """``jax.jit`` with :data:`COMPILER_OPTIONS`: the same input gives the same bits.

    Used as ``@kernel_jit`` or ``@kernel_jit(static_argnames=...)``, like ``jax.jit``.
    Called inside another traced function (JAX takes compiler options at the top level
    only), it is a plain ``jax.jit``: the options are those of the outer kernel.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> @kernel_jit
    ... def double(x):
    ...     return 2 * x
    >>> double(jnp.arange(3.0)).tolist()
    [0.0, 2.0, 4.0]
    """
    if fun is None:
        return partial(kernel_jit, **kwargs)
    import jax

    top = jax.jit(fun, compiler_options=COMPILER_OPTIONS, **kwargs)
    nested = jax.jit(fun, **kwargs)

    @wraps(fun)
    def call(*args, **kw):
        traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kw)))
        return (nested if traced else top)(*args, **kw)

    for name in ("lower", "trace", "eval_shape", "_cache_size", "clear_cache"):
        setattr(call, name, getattr(top, name))
    return call


def default_cache_dir() -> Path:
    """The cache directory used when ``XNORMCORRE_JAX_CACHE`` is not set.

    ``$XDG_CACHE_HOME/xnormcorre/jax`` if ``XDG_CACHE_HOME`` is set (and absolute),
    otherwise ``~/.cache/xnormcorre/jax``.

    Examples
    --------
    >>> default_cache_dir().parts[-2:]
    ('xnormcorre', 'jax')
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "xnormcorre" / "jax"


def _requested_dir() -> Path | None:
    """The directory the environment asks for, or None for the opt-out."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env.lower() in OFF_VALUES:
        return None
    if env:
        return Path(env).expanduser()
    return default_cache_dir()


def _usable(path: Path) -> str | None:
    """Create ``path`` if needed; the reason it cannot hold the cache, or None."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create it ({exc.strerror or exc})"
    if not os.access(path, os.W_OK | os.X_OK):
        return "it is not writable"
    return None


def enable(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache for xnormcorre's kernels.

    Idempotent and thread-safe: the first call decides, later calls return the same
    directory.  It configures JAX only; nothing is compiled or written until a kernel
    is compiled.

    Parameters
    ----------
    path : str or path-like, optional
        Cache directory.  Default: ``$XNORMCORRE_JAX_CACHE``, or
        :func:`default_cache_dir`; ``XNORMCORRE_JAX_CACHE=0`` (``off``, ``false``,
        ``no``) disables the cache unless ``path`` is given.

    Returns
    -------
    pathlib.Path or None
        The directory JAX caches in (a directory the user configured in JAX, if any),
        or None when the cache is off (opt-out, ``jax_enable_compilation_cache=False``,
        or the directory is not writable, with a warning).

    Notes
    -----
    Sets ``jax_compilation_cache_dir``, and lowers
    ``jax_persistent_cache_min_compile_time_secs`` to 0 and sets
    ``jax_persistent_cache_min_entry_size_bytes`` to -1 (no size limit) where they
    are at JAX's defaults (1 s and 0), so that every kernel is cached whatever the
    machine's compile speed.  Nothing is changed when JAX already has a cache
    directory.

    Examples
    --------
    It changes JAX's global configuration, hence not run here:

    >>> from xnormcorre.engine import compile_cache
    >>> compile_cache.enable("/tmp/my-jax-cache")  # doctest: +SKIP
    PosixPath('/tmp/my-jax-cache')
    """
    global _DONE, _RESULT
    with _LOCK:
        if _DONE:
            if path is not None and _RESULT is not None and Path(path).expanduser().resolve() != _RESULT:
                warnings.warn(
                    f"xnormcorre's compilation cache is already at {_RESULT}; {os.fspath(path)!r} "
                    "is ignored (call enable() with a path before the first registration, or set "
                    f"{ENV_VAR})",
                    UserWarning,
                    stacklevel=2,
                )
            return _RESULT
        _RESULT = _enable(None if path is None else Path(path).expanduser())
        _DONE = True
        return _RESULT


def _enable(path: Path | None) -> Path | None:
    import jax

    if not jax.config.jax_enable_compilation_cache:
        return None  # the user switched JAX's cache off
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return Path(configured)  # the user's own cache directory: leave JAX as it is
    if path is None:
        path = _requested_dir()
        if path is None:
            return None  # opt-out
    path = path.resolve()
    why = _usable(path)
    if why is not None:
        warnings.warn(
            f"xnormcorre: the JAX compilation cache is off because {path} {why}; every process "
            f"compiles its kernels again. Set {ENV_VAR} to a writable directory, or to 0 to "
            "silence this warning.",
            UserWarning,
            stacklevel=3,
        )
        return None
    if jax.config.jax_persistent_cache_min_compile_time_secs == _JAX_DEFAULT_MIN_COMPILE_SECS:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if jax.config.jax_persistent_cache_min_entry_size_bytes == _JAX_DEFAULT_MIN_ENTRY_BYTES:
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if jax.config.jax_compilation_cache_max_size == _JAX_DEFAULT_MAX_SIZE and _has_filelock():
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    jax.config.update("jax_compilation_cache_dir", os.fspath(path))
    repair(path)
    return path


def repair(path: str | os.PathLike[str]) -> int:
    """Give every cache entry without an access-time record one, under JAX's cache lock.

    A process killed between JAX's two writes of an entry (the compiled program, then
    its access time) leaves a program without an access time; JAX's size-bounded cache
    then fails to list the directory and warns at every later compilation.  The
    program is kept (it is whole: the access time is written after it) and stamped now.
    Returns the number of entries repaired; never raises.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "jit_k-cache").write_bytes(b"program")
    >>> repair(d), (d / "jit_k-atime").exists(), repair(d)
    (1, True, 0)
    """
    try:
        import time

        import filelock

        path = Path(path)
        orphans = [
            p for p in path.glob("*-cache") if not p.with_name(p.name[: -len("-cache")] + "-atime").exists()
        ]
        if not orphans:
            return 0
        with filelock.FileLock(path / ".lockfile", timeout=5):
            n = 0
            for p in orphans:
                atime = p.with_name(p.name[: -len("-cache")] + "-atime")
                if p.exists() and not atime.exists():
                    atime.write_bytes(time.time_ns().to_bytes(8, "little"))
                    n += 1
            return n
    except Exception:  # a cache that cannot be repaired stays as JAX left it
        return 0


def _has_filelock() -> bool:
    """Whether JAX can lock the cache's entries (it needs ``filelock`` for a bounded cache)."""
    try:
        import filelock  # noqa: F401
    except ImportError:
        return False
    return True


def _reset_for_tests() -> None:
    """Forget the first call's decision (JAX's own configuration is not undone)."""
    global _DONE, _RESULT
    with _LOCK:
        _DONE, _RESULT = False, None


def _map_count_and_cap() -> tuple[int, int] | None:
    """The process's memory maps and the kernel's cap on them; None where unknown
    (not Linux)."""
    try:
        with open("/proc/sys/vm/max_map_count", "rb") as f:
            cap = int(f.read())
        with open("/proc/self/maps", "rb") as f:
            return f.read().count(b"\n"), cap
    except (OSError, ValueError):
        return None


def release_if_crowded(share: float = MAP_SHARE) -> bool:
    """Drop JAX's in-memory compiled programs if the process holds more than ``share``
    of the kernel's memory-map cap.

    Every program that XLA's CPU backend compiles (or loads from the persistent cache)
    keeps a few hundred memory mappings for as long as JAX caches it, and a process
    beyond ``vm.max_map_count`` mappings (usually 65,530) is aborted the next time a
    program is loaded.  This runs ``jax.clear_caches()`` when the count is above
    ``share`` of the cap: the programs are compiled again (or loaded from the
    persistent cache) when next needed; results do not change.  The count is taken at
    most once a second; where it cannot be read (not Linux) nothing is done.

    Parameters
    ----------
    share : float
        Fraction of ``vm.max_map_count`` beyond which the programs are dropped.

    Returns
    -------
    bool
        Whether the compiled programs were dropped.

    Examples
    --------
    >>> release_if_crowded(share=1.0)  # never beyond the cap itself
    False
    """
    now = time.monotonic()
    with _MAP_LOCK:
        if now - _MAP_LAST[0] < _MAP_CHECK_SECONDS:
            return False
        _MAP_LAST[0] = now
        counted = _map_count_and_cap()
        if counted is None or counted[0] <= share * counted[1]:
            return False
        import jax

        jax.clear_caches()
        return True
