"""The house's process pool (`map_in_processes`): every task once, the initializer's data in each worker, the first
failure raised."""

from __future__ import annotations

import math
import multiprocessing

import pytest

from wsol.evaluation.pool import map_in_processes

_OFFSET: list[int] = []


def _set_offset(offset: int) -> None:
    _OFFSET.append(offset)


def _shifted(x: int) -> int:
    return x + _OFFSET[0]


def test_every_task_once_with_its_result_over_spawned_processes() -> None:
    pairs = list(map_in_processes(abs, [-3, 1, -2, 5, 0], 2, start_method="spawn"))
    assert sorted(pairs) == [(-3, 3), (-2, 2), (0, 0), (1, 1), (5, 5)]


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method")
def test_the_initializer_runs_in_each_worker_not_in_the_caller() -> None:
    pairs = dict(map_in_processes(_shifted, range(6), 2, start_method="fork", initializer=_set_offset, initargs=(10,)))
    assert pairs == {i: i + 10 for i in range(6)}
    assert _OFFSET == []


def test_the_first_failure_is_raised() -> None:
    with pytest.raises(ValueError, match="math domain error"):
        list(map_in_processes(math.sqrt, [4.0, -1.0, 9.0], 2, start_method="spawn"))


def test_no_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        list(map_in_processes(abs, [1], 0))
