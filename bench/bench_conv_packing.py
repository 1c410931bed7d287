"""Could conv and users' trunks train in packs, bitwise as alone? (issue 21, item 1.)

A pack of convolutional networks would run through ``torch.func.stack_module_state`` + ``vmap``
(which lowers the stacked convolutions to one grouped convolution). Packs promise results
bitwise equal to training alone, so this compares, for P small conv networks (the test trunk
``my_trunks:conv`` shape: 3 -> 16 channels, 3x3, then pooling and a linear head), the forward
outputs and every parameter gradient of one vmapped call with each network's own call, on one
thread. Any difference at all rules packing out under that promise.

    .venv/bin/python bench/bench_conv_packing.py --members 4 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import json

import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap


def conv_net(channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(channels, 1),
    )  # fmt: skip


def compare(members: int, batch: int, size: int, channels: int, seed: int) -> dict:
    torch.manual_seed(seed)
    models = [conv_net(channels) for _ in range(members)]
    x = torch.randn(members, batch, 3, size, size)
    y = torch.randn(members, batch, 1)
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def loss(p, b, xi, yi):
        return ((functional_call(base, (p, b), (xi,)) - yi) ** 2).mean()

    packed_out = vmap(lambda p, b, xi: functional_call(base, (p, b), (xi,)))(params, buffers, x)
    packed_grad = vmap(grad(loss))(params, buffers, x, y)
    out_diff, grad_diff, unequal = 0.0, 0.0, 0
    for i, model in enumerate(models):
        out = model(x[i])
        model.zero_grad()
        ((out - y[i]) ** 2).mean().backward()
        out_diff = max(out_diff, (out - packed_out[i]).abs().max().item())
        for name, param in model.named_parameters():
            diff = (param.grad - packed_grad[name][i]).abs().max().item()
            grad_diff = max(grad_diff, diff)
            unequal += diff > 0
    n_grads = members * len(list(models[0].parameters()))
    return {"seed": seed, "max_forward_diff": out_diff, "max_grad_diff": grad_diff,
            "gradients_not_bitwise": f"{unequal}/{n_grads}"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [compare(args.members, 32, 16, 16, seed) for seed in range(args.repeats)]
    for row in rows:
        print(json.dumps(row))
    bitwise = all(r["max_forward_diff"] == 0 and r["max_grad_diff"] == 0 for r in rows)
    print(f"vmapped conv pack bitwise equal to alone: {bitwise}")


if __name__ == "__main__":
    main()
