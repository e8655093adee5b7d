"""Run by test_coke_ddp.py: CoKe and LOOK state after 3 epochs (the last two in the moving-average stage), each rank feeding its half of every batch."""
import sys

import torch
import torch.distributed as dist

from reidkit.losses.coke import CoKeLoss, CoKeLossConfig
from reidkit.losses.look import LOOKLoss, LOOKLossConfig

torch.set_num_threads(1)
out = sys.argv[1]
world = int(dist.is_available() and "WORLD_SIZE" in __import__("os").environ and
            int(__import__("os").environ["WORLD_SIZE"]) > 1)
rank = 0
if world:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
else:
    world = 1
g = torch.Generator().manual_seed(0)
n, d, batch = 32, 5, 8
feats = torch.randn(3, n, 2, d, generator=g)       # epoch, instance, view, dim
labels = torch.randint(0, 4, (n,), generator=g)
coke = CoKeLoss(n, d, CoKeLossConfig(num_clusters=[3, 6], min_size_ratio=0.5, dual_lr=2.0, label_slots=2,
                                     moving_average_from=0.5), epochs=3)  # epochs 1, 2: the moving-average stage
look = LOOKLoss(n, d, LOOKLossConfig(k=4, temperature=0.2))
losses = []
for epoch in range(3):
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
    for s in range(0, n, batch):
        idx = perm[s:s + batch]
        share = batch // world
        mine = idx[rank * share:(rank + 1) * share]
        lc = coke(feats[epoch, mine].transpose(0, 1), mine)
        ll = look(feats[epoch, mine, 0], labels[mine], mine)
        both = torch.stack([lc, ll]).detach()
        if world > 1:
            dist.all_reduce(both)
            both /= world
        losses.append(both)
    coke.end_epoch()
if rank == 0:
    torch.save({"coke": coke.state_dict(), "look": look.state_dict(), "losses": torch.stack(losses)}, out)
if world > 1:
    dist.destroy_process_group()
