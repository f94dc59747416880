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

Whole programs: JAX's cache is keyed by the program itself, so a process still traces
each kernel before it can look it up (about 1.3 s for the six kernels of a
piecewise-rigid run).  :func:`kernel_jit` also keeps each kernel's executable in
:func:`program_dir`, keyed by what determines it without tracing, and a later process
loads it directly.

Same input, same bits: every kernel is compiled by :func:`kernel_jit`, with XLA's
``xla_cpu_multi_thread_eigen`` off.  XLA's multi-threaded FFT rounds a transform
differently depending on how its threads happen to split the work, so the same frames
could give results that differ in the last bit from one call to the next (shifts by
~1e-5 px at 512 x 512).  With it off, each FFT or matrix product runs on one thread;
the kernel thread pool (:func:`xnormcorre.engine.runner.kernel_threads`) keeps the cores
busy by running several kernel calls at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import warnings
from functools import partial, wraps
from pathlib import Path

import numpy as np

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

    Called at the top level, the compiled program of each input signature (static
    arguments, shapes, dtypes) is kept in memory and, with the cache on, on disk as a
    whole executable (:func:`program_dir`): a later process loads it without tracing the
    kernel again (see :func:`_program`).

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
    import inspect

    import jax

    top = jax.jit(fun, compiler_options=COMPILER_OPTIONS, **kwargs)
    nested = jax.jit(fun, **kwargs)
    names = kwargs.get("static_argnames") or ()
    static = frozenset((names,) if isinstance(names, str) else names)
    if kwargs.get("static_argnums") not in (None, ()):
        static = None  # static positions: always through jax.jit
    params = list(inspect.signature(fun).parameters.values())
    # the first position at which a static argument could be passed positionally
    positional = [
        i
        for i, p in enumerate(params)
        if static and p.name in static and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    first_static = min(positional, default=len(params) + 1)
    name = f"{fun.__module__}.{fun.__qualname__}"
    made: list = []  # the program maker, made on first use

    def maker(suffix: str = ""):
        """A ``jax.jit`` of the kernel under its own name (``_program_`` and the engine's
        source digest, plus ``suffix``): JAX's persistent cache keys programs by module
        name, so the executables made here are not ones JAX loaded from its cache (an
        executable XLA's CPU backend loaded cannot be serialized again whole), and a new
        engine version compiles each kernel once, not once from JAX's cache and again."""
        if made and not suffix:
            return made[0]

        @wraps(fun)
        def renamed(*a, **k):
            return fun(*a, **k)

        renamed.__name__ = renamed.__qualname__ = f"{fun.__name__}_program_{_source_digest()[:12]}{suffix}"
        jitted = jax.jit(renamed, compiler_options=COMPILER_OPTIONS, **kwargs)
        if not suffix:
            made.append(jitted)
        return jitted

    @wraps(fun)
    def call(*args, **kw):
        leaves = jax.tree.leaves((args, kw))
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            return nested(*args, **kw)
        if static is None or len(args) > first_static or program_dir() is None:
            return top(*args, **kw)
        fixed = tuple(sorted((k, v) for k, v in kw.items() if k in static))
        dynamic = {k: v for k, v in kw.items() if k not in static}
        key, program = _program(name, maker, fixed, args, dynamic)
        if program is None:
            return top(*args, **kw)
        try:
            return program(*args, **dynamic)
        except jax.errors.JaxRuntimeError:
            if not _forget(key):
                raise  # a program this process compiled: the error is the kernel's
            return top(*args, **kw)  # a loaded program that does not run: not used again

    def cache_size() -> int:
        with _PROGRAMS_LOCK:
            mine = sum(1 for key, entry in _PROGRAMS.items() if key[0] == name and entry[0] is not None)
        return top._cache_size() + mine

    def clear_cache() -> None:
        top.clear_cache()
        with _PROGRAMS_LOCK:
            for key in [k for k in _PROGRAMS if k[0] == name]:
                del _PROGRAMS[key]

    for attr in ("lower", "trace", "eval_shape"):
        setattr(call, attr, getattr(top, attr))
    call._cache_size = cache_size
    call.clear_cache = clear_cache
    return call


# ----------------------------------------------------------- whole compiled programs
#: Folder of the cache directory that holds whole compiled kernels (:func:`program_dir`).
PROGRAMS_FOLDER = "xnormcorre-programs"
#: Most programs kept on disk (a few hundred kB to 1 MB each); beyond it the least
#: recently used are deleted.  A program deleted while JAX's own cache still holds it is
#: compiled afresh to be written again, so the bound is far above what one analysis uses
#: (a default run: 2 or 6 programs per frame shape; this package's whole test suite: several
#: hundred).
MAX_PROGRAMS = 1024
#: The compiled programs of this process, by (kernel, static arguments, input tree and
#: types): ``(program, file it was loaded from or None)``; the program is None where it
#: could not be made ahead of time (``jax.jit`` serves those calls).
_PROGRAMS: dict = {}
_PROGRAMS_LOCK = threading.Lock()
_SOURCE_DIGEST: list[str] = []
_HOST_ISA: list[str] = []


def program_dir() -> Path | None:
    """Where whole compiled kernels are kept: the ``xnormcorre-programs`` folder of the
    compilation cache directory (:func:`enable`), or None when the cache is off.

    JAX's persistent cache is keyed by the program's HLO, so a process still traces each
    kernel (hundreds of milliseconds per kernel) before it can look a program up.  This
    folder holds each kernel's executable keyed by what determines it without tracing:
    the kernel's name, its static arguments, the tree, shapes and dtypes of its inputs,
    a digest of the engine's source files, the JAX and jaxlib versions, the device and
    the host processor's instruction set (:func:`_host_isa`), the compiler options,
    ``XLA_FLAGS`` and the JAX settings that change a trace.  A later process loads the
    executable directly.  Entries are written to a temporary name and renamed (a
    concurrent reader sees a whole entry or none); an entry that cannot be read is
    compiled again and rewritten; at most :data:`MAX_PROGRAMS` are kept (least recently
    used deleted).  The opt-out is the cache's own (``XNORMCORRE_JAX_CACHE=0``).

    Examples
    --------
    >>> d = program_dir()
    >>> d is None or d.name == "xnormcorre-programs"
    True
    """
    root = enable()
    return None if root is None else root / PROGRAMS_FOLDER


def _source_digest() -> str:
    """Digest of the engine package's source files (a changed kernel is a new key)."""
    if not _SOURCE_DIGEST:
        h = hashlib.blake2b(digest_size=16)
        for f in sorted(Path(__file__).parent.glob("*.py")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
        _SOURCE_DIGEST.append(h.hexdigest())
    return _SOURCE_DIGEST[0]


def _host_isa() -> str:
    """This machine's processor as its compiled programs depend on it: the architecture,
    the model and the instruction-set extensions (the first ``model name`` and ``flags``
    or ``Features`` lines of ``/proc/cpuinfo`` on Linux; ``platform.processor()``
    elsewhere).

    XLA compiles a CPU program for the instruction set of the machine that compiles it.
    A cache directory shared by several machines (a cluster's home directory) then keeps
    one program per kind of processor, instead of handing one compiled with extensions
    another processor lacks.

    Examples
    --------
    >>> _host_isa() == _host_isa() and len(_host_isa()) > 0
    True
    """
    if not _HOST_ISA:
        import platform

        found: dict[str, str] = {}
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    name, _, value = line.partition(":")
                    name = name.strip()
                    if name in ("model name", "flags", "Features", "CPU part") and name not in found:
                        found[name] = " ".join(sorted(value.split()))
        except OSError:
            pass
        text = "|".join(
            [platform.machine(), platform.processor(), *(f"{k}={found[k]}" for k in sorted(found))]
        )
        _HOST_ISA.append(hashlib.blake2b(text.encode(), digest_size=8).hexdigest())
    return _HOST_ISA[0]


def _leaf_type(x) -> tuple:
    """What of an input leaf determines the compiled program: its shape and dtype (and
    JAX's weak type of Python scalars)."""
    import jax

    if isinstance(x, bool | int | float | complex):
        return ("py", type(x).__name__)
    dtype = getattr(x, "dtype", None)
    dtype = jax.dtypes.canonicalize_dtype(np.result_type(x) if dtype is None else dtype)
    return (tuple(np.shape(x)), dtype.str, bool(getattr(x, "weak_type", False)))


def _disk_key(name: str, fixed: tuple, tree, types: tuple) -> str | None:
    """The file name of a program on disk; None when a static argument has no stable
    text (its ``repr`` names an object address)."""
    import jax
    import jaxlib

    text = repr(fixed)
    if " at 0x" in text:
        return None
    dev = jax.devices()[0]
    parts = (
        name,
        text,
        str(tree),
        repr(types),
        _source_digest(),
        jax.__version__,
        jaxlib.__version__,
        dev.platform,
        getattr(dev, "device_kind", ""),
        _host_isa(),
        repr(sorted(COMPILER_OPTIONS.items())),
        os.environ.get("XLA_FLAGS", ""),
        repr(
            [
                getattr(jax.config, opt, None)
                for opt in ("jax_enable_x64", "jax_default_matmul_precision", "jax_numpy_rank_promotion")
            ]
        ),
    )
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=20).hexdigest()
    return f"{name.rsplit('.', 1)[-1].strip('_')}-{digest}.program"


def _program(name: str, maker, fixed: tuple, args: tuple, dynamic: dict):
    """``(key, program)``: the compiled program of kernel ``name`` for these inputs, from
    this process's programs, else loaded from :func:`program_dir`, else compiled by
    ``maker()`` (a ``jax.jit`` of the kernel) and written there; the program is None if
    it cannot be made ahead of time (``jax.jit`` then serves the call)."""
    import jax

    leaves, tree = jax.tree.flatten((args, dynamic))
    try:
        types = tuple(_leaf_type(x) for x in leaves)
        key = (name, fixed, tree, types)
        hash(key)
    except TypeError:
        return None, None  # an unhashable static argument: jax.jit raises its own error
    with _PROGRAMS_LOCK:
        if key in _PROGRAMS:
            return key, _PROGRAMS[key][0]
    folder = program_dir()
    fname = None if folder is None else _disk_key(*key)
    path = None if fname is None else folder / fname
    program = None if path is None else _load_program(path)
    loaded = program is not None
    if program is None:
        program = _compile(maker, fixed, args, dynamic, fresh=False)
        if program is not None and path is not None:
            if program[1]:
                # JAX had it in its cache (its program file is gone or damaged): compile
                # it once more under a name JAX has never seen, to write a whole program
                program = _compile(maker, fixed, args, dynamic, fresh=True) or program
            if not program[1]:
                _save_program(program[0], path)
        program = None if program is None else program[0]
    with _PROGRAMS_LOCK:
        _PROGRAMS.setdefault(key, (program, path if loaded else None))
        return key, _PROGRAMS[key][0]


def _compile(maker, fixed: tuple, args: tuple, dynamic: dict, *, fresh: bool):
    """``(program, from JAX's cache)``, or None if the kernel cannot be compiled ahead of
    time.  ``fresh``: under a new name, so that JAX compiles it rather than loading it."""
    _watch_cache_hits()
    before = _HITS.count
    try:
        jitted = maker(f"_{os.urandom(6).hex()}" if fresh else "")
        program = jitted.lower(*args, **dict(fixed), **dynamic).compile()
    except Exception:  # noqa: BLE001 - let jax.jit raise (or succeed) itself
        return None
    return program, _HITS.count != before


def _forget(key) -> bool:
    """Drop a loaded program that failed to run, and its file; False if the program was
    compiled by this process (its error is the kernel's own)."""
    with _PROGRAMS_LOCK:
        entry = _PROGRAMS.get(key)
        if entry is None or entry[1] is None:
            return False
        _PROGRAMS[key] = (None, None)
    with contextlib.suppress(OSError):
        entry[1].unlink()
    return True


class _Hits(threading.local):
    count = 0


_HITS = _Hits()
_WATCHING: list[bool] = []


def _watch_cache_hits() -> None:
    """Count JAX's persistent-cache hits per thread (once per process)."""
    with _PROGRAMS_LOCK:
        if _WATCHING:
            return
        _WATCHING.append(True)
    from jax import monitoring

    def on_event(event: str, **_) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            _HITS.count += 1

    monitoring.register_event_listener(on_event)


_RUNTIME_READY: list[bool] = []


def _prepare_runtime() -> None:
    """Set up what a loaded program may call but only lowering sets up (once per process).

    On CPU, ``jnp.linalg.solve`` and its kin become calls into LAPACK, whose entry points
    jaxlib looks up when the first such call is *lowered*.  A process that only loads
    programs lowers nothing, and a loaded program's first LAPACK call would then jump to
    an empty address (a segmentation fault).  jaxlib's own set-up is called here (a few
    microseconds); where a jaxlib version lacks it, a small solve is lowered instead (the
    public way to the same set-up, about 0.2 s).
    """
    with _PROGRAMS_LOCK:
        if _RUNTIME_READY:
            return
        try:
            from jaxlib import lapack

            lapack._lapack.initialize()
        except Exception:  # noqa: BLE001 - another jaxlib layout: lower a solve instead
            import jax
            import jax.numpy as jnp

            eye = np.eye(2, dtype=np.float32)
            jax.jit(jnp.linalg.solve).lower(eye, eye[0])
        _RUNTIME_READY.append(True)


def _load_program(path: Path):
    """A program written by :func:`_save_program`, or None (absent or unreadable)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    _prepare_runtime()
    try:
        import pickle

        from jax.experimental.serialize_executable import deserialize_and_load

        payload, in_tree, out_tree = pickle.loads(data)
        program = deserialize_and_load(payload, in_tree, out_tree)
    except Exception:  # noqa: BLE001 - a damaged or foreign entry: compile again
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used
    return program


def _save_program(program, path: Path) -> None:
    """Write ``program`` to ``path`` atomically (temporary file, then rename); keep at
    most :data:`MAX_PROGRAMS` files.  Never raises: a program not written is compiled
    again by the next process."""
    import pickle
    import tempfile

    try:
        from jax.experimental.serialize_executable import serialize

        data = pickle.dumps(serialize(program))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".program")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        files = sorted(path.parent.glob("*.program"), key=_mtime)
        for old in files[: max(0, len(files) - MAX_PROGRAMS)]:
            old.unlink(missing_ok=True)
    except Exception:  # noqa: BLE001 - the cache is an optimisation
        return


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


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
        with _PROGRAMS_LOCK:
            _PROGRAMS.clear()
        return True
