"""The house's process pool (:func:`map_in_processes`) and the evaluator's use of it: chunks of images scored in
parallel processes (results equal the serial run's).

A study report fuses the class maps of many runs over the same pool (:mod:`wsol.study.fusion`). Each caller keeps
what is its own: the start method, what its workers set up once, and what a task is.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

import cv2

from wsol.evaluation.chunks import ChunkConfig, PartialResult, run_chunk
from wsol.evaluation.sources import Source
from wsol.metrics import warm_up_kernels

__all__ = ["chunk_indices", "map_in_processes", "run_in_pool"]

T = TypeVar("T")
R = TypeVar("R")


def map_in_processes(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    workers: int,
    *,
    start_method: str | None = None,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[tuple[T, R]]:
    """``(task, fn(task))`` for every task, in the order they finish, computed by ``workers`` processes.

    Args:
        fn: A module-level function (it is pickled by name into the workers).
        tasks: The tasks, each pickled to a worker; keep them small and park what every task shares with
            ``initializer``.
        workers: How many processes (>= 1).
        start_method: ``"fork"``, ``"spawn"``, ``"forkserver"`` or None for the platform's default.
        initializer: Called once in each worker with ``initargs`` before its first task.

    The first task that raises cancels the tasks not yet started and its exception is raised here; a consumer
    that stops iterating early cancels them too.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    context = multiprocessing.get_context(start_method)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=initializer, initargs=initargs) as pool:
        futures: dict[Future[R], T] = {pool.submit(fn, task): task for task in tasks}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


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
    if method == "fork":
        source.preload()
        # Compiled once here (or loaded from numba's cache), the kernels are inherited by every worker.
        warm_up_kernels()
    parts: list[PartialResult] = []
    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        chunks = chunk_indices(len(source), workers)
        for chunk, part in map_in_processes(
            _run_worker_chunk,
            chunks,
            workers,
            start_method=method,
            initializer=_init_worker,
            initargs=(source, config),
        ):
            parts.append(part)
            if on_images is not None:
                on_images(len(chunk))
    finally:
        cv2.setNumThreads(cv2_threads)
    return parts
