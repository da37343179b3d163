"""PyTorch data parallelism: ``DistributedDataParallel``, one process per worker.

``torch.multiprocessing.spawn`` starts ``workers`` processes joined in a process group (``gloo``
on CPU, ``nccl`` on GPUs, one GPU per rank). Each rank builds the PyTorch plugin's model
(:class:`dlbench.builtin.frameworks.torch.TorchModel`: module, loss, optimizer) from the same weights and
wraps its module in DDP, which all-reduces (averages) the gradients during ``backward``; the
plugin's own ``train_step`` then runs unchanged on the rank's shard of the global batch.

Sampling is :func:`dlbench.measure.sampler.sample` itself (first call apart, warm-up, calibrated
windows closed by a device synchronisation, stop on a CI target or the time budget), in lockstep
through its ``agree`` hook: DDP's all-reduce needs every rank to run the same number of steps, so
rank 0 makes each decision (warm-up done, iterations per window, stop) and broadcasts it, outside
the timed windows. Rank 0's windows are reported as global throughput (``workers x batch_size``
samples per step). On CPU each rank uses ``threads_per_worker`` intra-op threads (1 by default, as
``torchrun`` does), so N workers use N cores. Each rank gets the plugin's framework object with
its arguments (pickled by reference): this module never imports the plugin's ``__init__``.
"""

from __future__ import annotations

import json
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from dlbench.api import (
    Budget,
    BuildOptions,
    DataParallelRun,
    DlbenchError,
    Framework,
    ModelSpec,
    UnsupportedError,
    sample,
)

from .._dp_child import cpu_budget


def data_parallel_throughput(framework: Framework, spec: ModelSpec, weights: Mapping[str, np.ndarray],
                             options: BuildOptions, run: DataParallelRun) -> list[float]:
    """Global training throughput (samples/s per window) of ``run.workers`` DDP ranks, each
    building ``framework``'s (the PyTorch plugin's) model."""
    import torch
    import torch.multiprocessing as mp

    cuda = options.device.startswith("cuda")
    if cuda and torch.cuda.device_count() < run.workers:
        raise UnsupportedError(f"workers={run.workers}: DDP with NCCL needs one GPU per worker and "
                               f"torch sees {torch.cuda.device_count()}: choose workers <= "
                               f"{torch.cuda.device_count()}")
    if not cuda and not torch.distributed.is_gloo_available():
        raise UnsupportedError("this torch build has no gloo backend for CPU DDP")
    with tempfile.TemporaryDirectory(prefix="dlbench-ddp-") as tmp:
        out = Path(tmp) / "result.json"
        try:
            mp.spawn(_rank_main, nprocs=run.workers, join=True,
                     args=(framework, run.workers, _free_port(), spec, dict(weights), options, run, str(out)))
        except mp.ProcessRaisedException as exc:
            last = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            raise DlbenchError(f"DDP with workers={run.workers} failed in a rank: {last}") from None
        except mp.ProcessExitedException as exc:
            raise DlbenchError(f"DDP with workers={run.workers}: a rank died ({exc})") from None
        return [float(s) for s in json.loads(out.read_text())["samples"]]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, framework: Framework, world: int, port: int, spec: ModelSpec,
               weights: dict[str, np.ndarray], options: BuildOptions, run: DataParallelRun,
               out: str) -> None:
    """One DDP rank (a spawned process)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    cuda = options.device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(rank)
    else:
        torch.set_num_threads(cpu_budget(world, run.threads_per_worker)[0])
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)
    try:
        torch.manual_seed(options.seed)
        model: Any = framework.build(  # a TorchModel
            spec, weights, replace(options, device=f"cuda:{rank}" if cuda else "cpu"))
        ddp = DistributedDataParallel(model.module, device_ids=[rank] if cuda else None)
        model._fn = torch.compile(ddp, dynamic=False) if options.variant == "compiled" else ddp
        lo, hi = rank * run.batch_size, (rank + 1) * run.batch_size
        x = model.to_device({k: np.asarray(v)[lo:hi] for k, v in run.inputs.items()})
        y = model.to_device(np.asarray(run.targets)[lo:hi])
        flag = torch.zeros(1, dtype=torch.int64, device=model.device)

        def agree(value: int) -> int:
            """Rank 0's value, on every rank."""
            flag.fill_(int(value))
            dist.broadcast(flag, 0)
            return int(flag.item())

        samples = sample(lambda: model.train_step(x, y), model.synchronize,
                         Budget.from_dict(dict(run.budget)), agree=agree).samples
        if rank == 0:
            n = world * run.batch_size
            Path(out).write_text(json.dumps({"samples": [n / s for s in samples]}))
        # every rank reaches here before any tears gloo down: a rank destroying the group while
        # another still has a collective in flight aborted the other (SIGABRT, about 1 run in 6)
        dist.barrier()
    finally:
        dist.destroy_process_group()


