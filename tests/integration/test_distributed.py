"""Correction of a TIFF-backed movie on a dask.distributed cluster of worker *processes*.

The backends' arrays hold no open file (CachingFileManager + SerializableLock), so the
task graph pickles to the workers, which re-open the file themselves.  Workers are
started with the ``spawn`` method (distributed's default, ``distributed.worker.
multiprocessing-method``): JAX must never be forked after it has initialized.
"""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import xarray as xr

import xnormcorre

distributed = pytest.importorskip("distributed")


def test_local_cluster_gives_the_eager_shifts(synthetic_tiff, tmp_path):
    path, arr = synthetic_tiff
    eager = xnormcorre.rigid(xr.open_dataarray(path, engine="xnormcorre_tiff").load(), max_shifts=4)
    ctx = distributed.utils.get_mp_context()
    assert ctx.get_start_method() in ("spawn", "forkserver")  # never fork a process that runs JAX
    with (
        distributed.LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=40
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        movie = xnormcorre.open_movie(path, chunks={"time": 16})
        res = movie.normcorre.rigid(max_shifts=4)  # template from frames read through the cluster
        shifts, corrected = client.compute([res.shifts, res.corrected.isel(time=slice(0, 20))], sync=True)
        # the workers (other processes) read the TIFF: nothing was opened only in this process
        pids = client.run(lambda: __import__("os").getpid())
        assert len(set(pids.values())) == 2 and multiprocessing.current_process().pid not in pids.values()
        movie.close()
    np.testing.assert_array_equal(shifts.values, eager.shifts.values)
    np.testing.assert_array_equal(corrected.values, eager.corrected.values[:20])
    np.testing.assert_array_equal(res.template.values, eager.template.values)
