"""The Dask workers of one ingest or scoring job: an existing cluster (`--scheduler`), or a LocalCluster of `count`
single-threaded worker processes on loopback (`--workers`), started on demand and closed with the job.

A LocalCluster starts in a background thread, and only when the work is worth it (`map_adaptive`): spawning
workers and importing torch in them takes tens of seconds on a small machine, and the caller keeps working in its
own process meanwhile, handing the rest over once the workers are ready. Scoring shares one cluster between its
ingest and its chunks, so the workers start at most once.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from clinfuse.platform.errors import ClinFuseError

_TASKS_PER_WORKER = 4  # tasks in flight per worker thread: enough to hide a round trip, few enough for flat memory
_MAX_ITEMS_PER_TASK = 16
_CONNECT_TIMEOUT = "20s"
WORKER_START_UP_S = 30.0  # a local worker's imports (torch, MONAI, decoders): 29-39 s measured on 2 busy cores
WORTH_STARTING = 1.0  # workers start while this process goes on working: they cost only the cores their start takes
MEASURE_S = 2.0  # work at least this long in this process before estimating the rest


class DaskWorkers:
    """Where parallel work runs; `ready()` says whether handing work over costs nothing more."""

    def __init__(self, count: int | None = None, scheduler: str | None = None, preload: tuple[str, ...] = ()) -> None:
        self.count = count or os.cpu_count() or 1
        self.scheduler = scheduler
        self.preload = preload  # modules each worker imports before it is counted ready
        self._started: threading.Thread | None = None
        self._ready = threading.Event()
        self._client: Any = None
        self._cluster: Any = None
        self._error: BaseException | None = None

    @property
    def parallel(self) -> bool:
        """Whether there is anywhere to run work besides this process."""
        return self.scheduler is not None or self.count > 1

    @property
    def starting(self) -> bool:
        return self._started is not None

    def start(self) -> None:
        """Connect or start the cluster in the background (once); `ready()` turns true when its workers can work."""
        if self._started is None:
            self._started = threading.Thread(target=self._connect, name="clinfuse-dask-start", daemon=True)
            self._started.start()

    def ready(self) -> bool:
        if self.scheduler is not None:  # a running cluster: connecting costs less than working alone meanwhile
            self.client()
            return True
        return self._ready.is_set() and self._error is None

    def client(self) -> Any:
        """The cluster's client, waiting for it to start; a cluster that cannot be reached is the user's fix."""
        self.start()
        self._ready.wait()
        if self._error is not None:
            where = f"the Dask scheduler at {self.scheduler}" if self.scheduler else "a local Dask cluster"
            raise ClinFuseError(
                f"could not start work on {where}: {type(self._error).__name__}: {str(self._error)[:200]}",
                "check that the scheduler is running and reachable (dask scheduler / dask worker), or leave out "
                "--scheduler to use local worker processes",
            ) from self._error
        return self._client

    def map_ordered(self, function: Callable[[Any], Any], items: list) -> Iterator[Any]:
        """function(item) for every item, in order, computed on the cluster a few items to a task (at most 16, and
        at least four tasks per worker, so that every worker gets work and slow items even out).

        Only a few tasks per worker are in flight, so results stream back as fast as the caller consumes them
        (writes them to disk) and memory does not grow with the number of items. A task lost with its worker
        (a decoder that crashed the process) is retried item by item, so only the item that kills a worker is
        lost; its result is `on_lost(item, error)` of the function when it has one, else the error is raised."""
        client = self.client()
        slots = max(1, sum(client.nthreads().values()))  # worker threads: `dask worker --nthreads` may give several
        per_task = max(1, min(_MAX_ITEMS_PER_TASK, len(items) // (_TASKS_PER_WORKER * slots)))
        batches = iter([items[start : start + per_task] for start in range(0, len(items), per_task)])
        window = _TASKS_PER_WORKER * slots

        def submit(batch: list) -> tuple[list, Any]:
            return batch, client.submit(run_batch, function, batch, pure=False)

        pending = deque(submit(batch) for batch in islice(batches, window))
        while pending:
            batch, future = pending.popleft()
            pending.extend(submit(following) for following in islice(batches, 1))
            try:
                results = future.result()
            except Exception as lost:  # noqa: BLE001 - the worker died: find the item that killed it
                results = [self._one(client, function, item, lost) for item in batch]
            del future  # the scheduler forgets a result nobody holds
            yield from results

    def map_adaptive(self, function: Callable[[Any], Any], items: list) -> Iterator[Any]:
        """function(item) for every item, in order, computed in this process and on the workers.

        Work starts in this process. Local workers are started in the background only once the measured time per
        item says the rest would take this process longer than starting them does (each imports torch and the
        kinds' worker modules): counting items instead would send a few large items, or many small ones, the
        wrong way. As soon as the workers are ready (at once for a running cluster, `--scheduler`), they take the
        rest (`map_ordered`); this process goes on working until then."""
        started, done = 0.0, 0
        for item in items:
            if self.ready():
                break
            yield function(item)
            done += 1
            if done == 1:  # the first item pays this process's lazy imports and loads: the clock starts after it
                started = time.perf_counter()
                continue
            elapsed = time.perf_counter() - started
            remaining = (len(items) - done) * elapsed / (done - 1)
            if self.parallel and elapsed >= MEASURE_S and remaining > WORTH_STARTING * WORKER_START_UP_S:
                self.start()
        if done < len(items):
            yield from self.map_ordered(function, items[done:])

    @staticmethod
    def _one(client: Any, function: Callable[[Any], Any], item: Any, lost: Exception) -> Any:
        try:
            return client.submit(run_batch, function, [item], pure=False).result()[0]
        except Exception as error:  # noqa: BLE001
            on_lost = getattr(function, "on_lost", None)
            if on_lost is None:
                raise error from lost
            return on_lost(item, error)

    def close(self) -> None:
        if self._started is not None:
            self._started.join()
        for resource in (self._client, self._cluster):
            if resource is not None:
                resource.close()
        self._client = self._cluster = None

    def __enter__(self) -> DaskWorkers:
        if self.scheduler is not None:
            self.start()  # a running cluster is connected at once
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connect(self) -> None:
        try:
            from dask.distributed import Client, LocalCluster

            if self.scheduler:
                self._client = Client(self.scheduler, timeout=_CONNECT_TIMEOUT)
            else:
                # the status page on a free loopback port: its default (8787) warns on the user's terminal when taken
                self._cluster = LocalCluster(n_workers=self.count, threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                             silence_logs=40)  # fmt: skip
                self._client = Client(self._cluster)
            self._client.run(prepare_worker, self.preload)
        except BaseException as error:  # noqa: BLE001 - reported by client(), in the caller's thread
            self._error = error
        finally:
            self._ready.set()


def prepare_worker(preload: tuple[str, ...] = ()) -> None:
    """One torch thread per worker process (N processes x N threads would oversubscribe the cores); torch and the
    `preload` modules imported before the first task, while the caller is still busy."""
    import torch

    torch.set_num_threads(1)
    for module in preload:
        importlib.import_module(module)


def run_batch(function: Callable[[Any], Any], batch: list) -> list:
    """One task: the function over a few items (module level, so that any worker can import it)."""
    return [function(item) for item in batch]
