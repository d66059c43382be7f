#!/usr/bin/env python3
"""The seed CNN in PyTorch, timed the same way as `tune bench`: training steps and evaluation
of the default model at batch 100 with the same thread count, on random inputs (speed does
not depend on the pixel values). Prints images/s; `tune bench --pytorch` runs it when torch is
installed (`pip install torch==2.9.0`) and prints the ratio.

Usage: pytorch_cnn.py --threads N --steps S
"""
import argparse
import sys
import time

try:
    import torch
    from torch import nn
except ImportError:
    print("torch not installed: skipped (pip install torch==2.9.0)")
    sys.exit(3)


def seed_model():
    def conv(cin, cout, pool):
        layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout, eps=1e-3), nn.ReLU()]
        if pool > 1:
            layers.append(nn.MaxPool2d(pool))
        return layers

    def fc(fin, fout, act=True):
        layers = [nn.BatchNorm1d(fin, eps=1e-3), nn.Dropout(0.3), nn.Linear(fin, fout)]
        if act:
            layers.append(nn.ReLU())
        return layers

    return nn.Sequential(
        *conv(1, 32, 1), *conv(32, 64, 2), *conv(64, 128, 2), nn.Flatten(),
        *fc(6272, 512), *fc(512, 256), *fc(256, 10, act=False),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = seed_model()
    params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for n, b in model.named_buffers() if "running" in n)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(100, 1, 28, 28)
    y = torch.randint(0, 10, (100,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    model.train()
    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    train = args.steps * 100 / (time.perf_counter() - t)
    model.eval()
    xe = torch.rand(500, 1, 28, 28)
    with torch.no_grad():
        model(xe)
        t = time.perf_counter()
        for _ in range(4):
            model(xe)
        evals = 2000 / (time.perf_counter() - t)
    print(f"pytorch {torch.__version__}: {params} params, {args.threads} threads, batch 100")
    print(f"pytorch train: {train:.1f} images/s")
    print(f"pytorch eval:  {evals:.1f} images/s")


if __name__ == "__main__":
    main()
