"""DaskWorkers: ordered results, bounded tasks, a lost task costs only its own item, an unreachable cluster is one
clear error. The cluster is a LocalCluster of threads in this process on loopback, reached by its address as
`--scheduler` reaches a real one (no worker processes to spawn)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import torch
from clinfuse.platform import dask_workers
from clinfuse.platform.dask_workers import DaskWorkers
from clinfuse.platform.errors import ClinFuseError
from dask.distributed import LocalCluster, get_worker


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    threads = torch.get_num_threads()  # the workers set one torch thread in the process they run in: this one
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as cluster:  # fmt: skip
        yield cluster.scheduler_address
    torch.set_num_threads(threads)


class Square:
    """Squares its item; item 7 breaks the task it is in, as a decoder that kills its worker does."""

    def __call__(self, item: int) -> int:
        if item == 7:
            raise RuntimeError("worker lost")
        return item * item

    @staticmethod
    def on_lost(item: int, error: BaseException) -> int:
        return -1


def test_results_come_back_in_order_and_a_lost_item_fails_alone(scheduler: str) -> None:
    with DaskWorkers(scheduler=scheduler) as workers:
        assert workers.parallel and workers.ready()
        results = list(workers.map_ordered(Square(), list(range(300))))
    assert results == [-1 if i == 7 else i * i for i in range(300)]


def test_without_a_fallback_the_lost_item_raises(scheduler: str) -> None:
    def square(item: int) -> int:
        return Square()(item)

    with DaskWorkers(scheduler=scheduler) as workers, pytest.raises(RuntimeError, match="worker lost"):
        list(workers.map_ordered(square, list(range(20))))


def test_one_local_worker_is_not_parallel_and_starts_nothing() -> None:
    workers = DaskWorkers(1)
    assert not workers.parallel and not workers.ready() and not workers.starting
    workers.close()


def test_an_unreachable_scheduler_is_one_error_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dask_workers, "_CONNECT_TIMEOUT", "1s")
    with pytest.raises(ClinFuseError) as raised, DaskWorkers(scheduler="tcp://127.0.0.1:9") as workers:
        workers.ready()
    assert "tcp://127.0.0.1:9" in raised.value.problem
    assert "--scheduler" in raised.value.fix


class WhereRun:
    """(item, whether it ran on a Dask worker) per item, after `seconds` of work."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds

    def __call__(self, item: int) -> tuple[int, bool]:
        time.sleep(self.seconds)
        try:
            get_worker()
        except ValueError:
            return item, False
        return item, True


def test_a_small_job_runs_here_without_starting_local_workers() -> None:
    with DaskWorkers(2) as workers:
        results = list(workers.map_adaptive(WhereRun(), list(range(50))))
        assert not workers.starting
    assert results == [(i, False) for i in range(50)]


def test_local_workers_start_once_the_measured_rest_exceeds_their_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """With MEASURE_S = 0.2 s and WORKER_START_UP_S = 1 s: 50 items of 0.05 s leave about 2 s of work after the
    measurement, so the workers are asked to start (this process goes on with every item while they are not
    ready); 8 items leave less than the start-up, so they are not."""
    monkeypatch.setattr(dask_workers, "MEASURE_S", 0.2)
    monkeypatch.setattr(dask_workers, "WORKER_START_UP_S", 1.0)
    started: list[int] = []
    monkeypatch.setattr(DaskWorkers, "start", lambda self: started.append(1))
    assert list(DaskWorkers(2).map_adaptive(WhereRun(0.05), list(range(50)))) == [(i, False) for i in range(50)]
    assert started
    started.clear()
    assert len(list(DaskWorkers(2).map_adaptive(WhereRun(0.05), list(range(8))))) == 8
    assert not started


def test_a_running_cluster_takes_every_item_at_once_in_order(scheduler: str) -> None:
    with DaskWorkers(scheduler=scheduler) as workers:
        workers.client()  # connected
        results = list(workers.map_adaptive(WhereRun(), list(range(40))))
    assert results == [(i, True) for i in range(40)]
