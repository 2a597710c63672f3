"""Run by ``tests/engine/test_distributed.py`` under torchrun (2 CPU processes,
gloo): :class:`mmlgc.layers.AllReduceSyncBatchNorm` on each rank's half of a
batch gives the outputs, running statistics and gradients of a plain batch
norm on the whole batch. Each rank writes its largest differences to
``$SYNCBN_OUT/rank<r>.json`` (torchrun interleaves the ranks' stdout)."""
import json
import os
import os.path as osp

import torch
import torch.distributed as dist
from torch import nn

from mmlgc.layers import AllReduceSyncBatchNorm


def main():
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    report = {}
    for shape in [(4, 6, 1, 1), (4, 6, 5, 3)]:  # pooled vectors, maps
        torch.manual_seed(0)  # the same global batch on every rank
        x = torch.randn(shape, dtype=torch.float64) * 3 + 1
        upstream = torch.randn(shape, dtype=torch.float64)
        reference = nn.BatchNorm2d(6).double()
        nn.init.uniform_(reference.weight)
        nn.init.uniform_(reference.bias)
        synced = AllReduceSyncBatchNorm(6).double()
        synced.load_state_dict(reference.state_dict())
        ddp = nn.parallel.DistributedDataParallel(synced)

        x_ref = x.clone().requires_grad_()
        out_ref = reference(x_ref)
        # Per-rank losses are means over the local half, as a detector's.
        (out_ref * upstream).sum().div(shape[0]).backward()

        part = slice(rank * shape[0] // world, (rank + 1) * shape[0] // world)
        x_loc = x[part].clone().requires_grad_()
        out_loc = ddp(x_loc)
        (out_loc * upstream[part]).sum().div(shape[0] // world).backward()

        diff = dict(
            out=(out_loc - out_ref[part]).abs().max(),
            # Rank r's input gradient carries every rank's loss through the
            # all_reduce (W x the share of the mean loss); DDP's 1/W on the
            # parameter gradients upstream makes them the global batch's.
            input_grad=(x_loc.grad - world * x_ref.grad[part]).abs().max(),
            weight_grad=(synced.weight.grad -
                         reference.weight.grad).abs().max(),
            bias_grad=(synced.bias.grad - reference.bias.grad).abs().max(),
            running_mean=(synced.running_mean -
                          reference.running_mean).abs().max(),
            running_var=(synced.running_var -
                         reference.running_var).abs().max())
        report[str(shape)] = {k: float(v) for k, v in diff.items()}
    try:
        nn.SyncBatchNorm(6)(torch.randn(2, 6, 1, 1))
        report['torch_sync_bn_on_cpu'] = 'runs'
    except ValueError as error:
        report['torch_sync_bn_on_cpu'] = str(error)
    with open(osp.join(os.environ['SYNCBN_OUT'], f'rank{rank}.json'),
              'w') as f:
        json.dump(dict(rank=rank, **report), f)
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
