"""More than one process: ``torchrun --nproc-per-node N retort distill ...`` or ``accelerate launch``.

Both launchers set ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; ``init`` joins the
process group (gloo on CPU, nccl on GPU). The training loop stays one loop:

- every process builds the same batch order, a pure function of (seed, epoch), of *global* batches of
  ``batch_size x processes x grad_accum`` examples, and takes its own contiguous share of each
  (``shard``), cut into ``grad_accum`` micro-batches;
- each micro-batch's loss is scaled by its share of the global batch, so that the summed gradients are
  those of the global batch's mean loss, exactly, whatever the shares' sizes (a last, short batch);
- after the micro-batches, ``all_reduce_grads`` sums every gradient over the processes in one flat
  buffer: the model's and the objective's (projections, learned layer weights) alike, and a parameter
  that got no gradient (BERT's unused pooler) on every process is skipped on every process, which
  ``DistributedDataParallel`` would reject; then every process takes the same optimizer step;
- evaluation, logs and checkpoints are rank 0's; each process keeps its own RNG state in the
  checkpoint, so a resumed run continues every process exactly.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, processes) from the launcher's environment; (0, 1) without one."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def init(device: torch.device) -> tuple[int, int]:
    """Join the process group when launched with several processes; return (rank, processes)."""
    rank, size = world()
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=size, timeout=timedelta(minutes=30))
    return rank, size


def is_main() -> bool:
    """Whether this process is rank 0 (the one that evaluates, logs and saves); True without a launcher."""
    return world()[0] == 0


def barrier() -> None:
    """Wait for every process (nothing in one process)."""
    if dist.is_initialized():
        dist.barrier()


def rank_zero_first(fn, device: torch.device):
    """``fn()`` on rank 0 and then, after a barrier, on every other process: work that rank 0 keeps on disk (the
    teacher's cached outputs), which the others then read instead of doing it again. One process: ``fn()``."""
    rank, size = init(device)
    if size <= 1:
        return fn()
    out = fn() if rank == 0 else None
    barrier()
    return out if rank == 0 else fn()


def shard(batch: list[int], rank: int, size: int, accum: int) -> list[list[int]]:
    """This process's micro-batches of one global batch: its contiguous share (sizes differ by at most
    one), cut into ``accum`` parts; empty parts are dropped."""
    share = _split(batch, size)[rank]
    return [m for m in _split(share, accum) if m]


def _split(items: list[int], parts: int) -> list[list[int]]:
    q, r = divmod(len(items), parts)
    out, start = [], 0
    for p in range(parts):
        end = start + q + (1 if p < r else 0)
        out.append(items[start:end])
        start = end
    return out


def all_reduce_grads(params: list[torch.nn.Parameter]) -> None:
    """Sum the gradients of ``params`` over every process (one flat buffer, one collective)."""
    if not dist.is_initialized():
        return
    # a process whose share was empty has no gradients: agree first on which parameters have one anywhere
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8)
    dist.all_reduce(present, op=dist.ReduceOp.MAX)
    for p, has in zip(params, present.tolist()):
        if has and p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def broadcast_parameters(modules: list[torch.nn.Module]) -> None:
    """Every process starts from rank 0's weights."""
    if not dist.is_initialized():
        return
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers everywhere: state an objective updates from its own process's losses (the
    loss-based layer weights' running averages) stays one state, rank 0's, after every step."""
    if not dist.is_initialized():
        return
    for b in module.buffers():
        dist.broadcast(b.data, src=0)


def gather_rng_states(mine):
    """Every process's RNG state, on rank 0 (processes 1..N-1, in order); None in one process."""
    if not dist.is_initialized():
        return None
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, mine)
    return states[1:]


def close() -> None:
    """Wait for every process, then leave the process group (nothing in one process)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
