"""The evaluator's worker pool: chunks of images scored in parallel processes (results equal the serial run's)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

import cv2

from wsol.evaluation.chunks import ChunkConfig, PartialResult, run_chunk
from wsol.evaluation.sources import Source
from wsol.metrics import warm_up_kernels

__all__ = ["chunk_indices", "run_in_pool"]

# Set once per worker process by _init_worker, so tasks carry only image indices.
_WORKER: tuple[Source, ChunkConfig] | None = None


def _init_worker(source: Source, config: ChunkConfig) -> None:
    global _WORKER
    _WORKER = (source, config)
    # The parallelism is over images, so OpenCV runs single-threaded. Forked workers inherit 1 from the
    # parent and must not touch the inherited pool (reconfiguring it deadlocks); spawned ones set it.
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


def _run_worker_chunk(indices: Sequence[int]) -> PartialResult:
    assert _WORKER is not None
    return run_chunk(_WORKER[0], indices, _WORKER[1])


def chunk_indices(n: int, workers: int) -> list[list[int]]:
    """Image indices ``0 .. n - 1`` in runs of at most 32, about eight per worker."""
    size = max(1, min(32, -(-n // (workers * 8))))
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def run_in_pool(
    source: Source, config: ChunkConfig, workers: int, on_images: Callable[[int], object] | None = None
) -> list[PartialResult]:
    """Every image of ``source`` scored by ``workers`` processes, one :class:`PartialResult` per chunk.

    ``on_images(count)`` is called as each chunk finishes (in completion order).
    """
    # fork starts workers instantly and shares the parent's imports and data (elsewhere: the default
    # start method). OpenCV's thread count is set to 1 in the parent before the fork: a forked child
    # that reconfigured the pool it inherited (whose threads did not survive the fork) would deadlock.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() and os.name == "posix" else None
    context = multiprocessing.get_context(method)
    if method == "fork":
        source.preload()
        # Compiled once here (or loaded from numba's cache), the kernels are inherited by every worker.
        warm_up_kernels()
    parts: list[PartialResult] = []
    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(source, config)
        ) as pool:
            chunks = chunk_indices(len(source), workers)
            futures = {pool.submit(_run_worker_chunk, chunk): len(chunk) for chunk in chunks}
            for future in as_completed(futures):
                parts.append(future.result())
                if on_images is not None:
                    on_images(futures[future])
    finally:
        cv2.setNumThreads(cv2_threads)
    return parts
