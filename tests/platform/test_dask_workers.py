"""DaskWorkers: ordered results, bounded tasks, a lost task costs only its own item, an unreachable cluster is one
clear error. The cluster is a LocalCluster of threads in this process on loopback, reached by its address as
`--scheduler` reaches a real one (no worker processes to spawn)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from clinfuse.platform import dask_workers
from clinfuse.platform.dask_workers import DaskWorkers
from clinfuse.platform.errors import ClinFuseError
from dask.distributed import LocalCluster


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
