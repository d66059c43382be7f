#!/usr/bin/env python3
"""tune against Optuna + PyTorch on real training, at equal wall time.

Both search `search_spaces/quick.toml`'s space (learning rate, dropout, 1-3 conv blocks of
16/32/64 channels with or without a 2x2 pool, an optional dense block) on a stratified
5,000-image subset of the train split, validating on the official 10,000 after every epoch,
with the same recipe (Adam with Keras' epsilon, batch 100, at most 4 epochs, early stopping
and the plateau rule on val_acc with patience 2, PyTorch's initialisation, batch norm with
epsilon 1e-3). Both start from the same seed-like network (enqueued), then:

- tune: `tune run` at its defaults (quick.toml: random search with the one-epoch rule; one
  slot per core) with `--timeout`;
- Optuna: TPESampler(seed) + SuccessiveHalvingPruner, `n_jobs=1` (its faster setting on
  2 cores: torch uses both), the same timeout; a trial in flight stops after the epoch that
  crosses it, as tune's do.

It reports, per tool and seed, the best val_acc held at each minute mark (from each epoch's
wall-clock time) and the trial-epochs per hour. Run it on an otherwise idle machine:

    python -m venv venv && venv/bin/pip install torch==2.9.0 optuna
    venv/bin/python benches/optuna_side_by_side.py --tune target/release/tune \
        --data-dir /usr/share/datasets/fashion-mnist --minutes 5 --marks 1,2,3,5 --seeds 1,2,3 --out side

The PyTorch side holds out its own class-balanced 10,000 (numpy, seed 27) and draws its own
subsets: the same procedure as tune's, not the same images.
"""
import argparse
import csv
import datetime
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

QUICK = Path(__file__).resolve().parent.parent / "search_spaces" / "quick.toml"
# The seed's network as quick's space can hold it: conv 32 → 64 (pool) → 64 (pool), one dense
# block of 256, dropout 0.3, lr 1e-3 (the seed: 32 → 64 → 128, dense 512 → 256).
SEED_LIKE = {
    "lr": 1e-3, "drop_rate": 0.3, "n_conv": 3, "n_fc": 1, "fc0_neurons": 256,
    "conv0_channels": 32, "conv0_pool": 1, "conv1_channels": 64, "conv1_pool": 2,
    "conv2_channels": 64, "conv2_pool": 2,
}
SUBSET, MAX_EPOCHS, PATIENCE, LR_PATIENCE, BATCH = 5000, 4, 2, 2, 100


def space_for_seed(seed):
    """quick.toml with a trial count the timeout always cuts, the seed, and the enqueued network."""
    text = QUICK.read_text()
    text = text.replace("trials = 8", "trials = 10000").replace("seed = 7", f"seed = {seed}")
    text = text.replace('name = "quick"', f'name = "side-{seed}"')
    enqueue = "\n[[study.enqueue]]\n" + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in SEED_LIKE.items()
    )
    head, params = text.split("[params]")
    return head + enqueue + "\n[params]" + params


def unix(stamp):
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run_tune(args, seed, out):
    space = out / f"side-{seed}.toml"
    space.write_text(space_for_seed(seed))
    runs = out / f"tune-{seed}"
    started = time.time()
    subprocess.run(
        [args.tune, "run", str(space), "--runs-dir", str(runs), "--data-dir", args.data_dir,
         "--timeout", f"{args.minutes}m"],
        check=True, stdout=subprocess.DEVNULL, stderr=open(out / f"tune-{seed}.log", "w"),
    )
    events = []
    for line in (runs / f"side-{seed}" / "journal.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e["event"] == "epoch":
            events.append((unix(e["at"]) - started, e["number"], e["metrics"]["val_acc"]))
    return events


def load_idx(path):
    import numpy as np
    with gzip.open(path) as f:
        data = f.read()
    if int.from_bytes(data[2:3], "big") != 8:
        raise SystemExit(f"{path}: not a uint8 IDX file")
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def run_optuna(args, seed):
    import numpy as np
    import optuna
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.time()
    d = Path(args.data_dir)
    x = load_idx(d / "train-images-idx3-ubyte.gz")
    y = load_idx(d / "train-labels-idx1-ubyte.gz").astype(np.int64)
    xv = torch.from_numpy(load_idx(d / "t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0).unsqueeze(1)
    yv = torch.from_numpy(load_idx(d / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    rng = np.random.default_rng(27)
    held = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:1000] for c in range(10)])
    train = np.setdiff1d(np.arange(len(y)), held)
    deadline = started + args.minutes * 60
    events = []

    def build(p):
        layers, c, side = [], 1, 28
        for i in range(p["n_conv"]):
            ch, pool = p[f"conv{i}_channels"], p[f"conv{i}_pool"]
            layers += [nn.Conv2d(c, ch, 3, padding=1), nn.BatchNorm2d(ch, eps=1e-3, momentum=0.1), nn.ReLU()]
            if pool > 1:
                layers.append(nn.MaxPool2d(pool))
                side //= pool
            c = ch
        layers.append(nn.Flatten())
        f = c * side * side
        for j in range(p["n_fc"]):
            n = p[f"fc{j}_neurons"]
            layers += [nn.BatchNorm1d(f, eps=1e-3), nn.Dropout(p["drop_rate"]), nn.Linear(f, n), nn.ReLU()]
            f = n
        layers += [nn.BatchNorm1d(f, eps=1e-3), nn.Dropout(p["drop_rate"]), nn.Linear(f, 10)]
        return nn.Sequential(*layers)

    def objective(trial):
        p = {
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "drop_rate": trial.suggest_float("drop_rate", 0.1, 0.5),
            "n_conv": trial.suggest_int("n_conv", 1, 3),
            "n_fc": trial.suggest_int("n_fc", 0, 1),
        }
        for i in range(p["n_conv"]):
            p[f"conv{i}_channels"] = trial.suggest_categorical(f"conv{i}_channels", [16, 32, 64])
            p[f"conv{i}_pool"] = trial.suggest_categorical(f"conv{i}_pool", [1, 2])
        if p["n_fc"]:
            p["fc0_neurons"] = trial.suggest_categorical("fc0_neurons", [64, 128, 256])
        torch.manual_seed(seed * 100_000 + trial.number)
        sub_rng = np.random.default_rng(seed * 100_000 + trial.number)
        subset = np.concatenate(
            [sub_rng.permutation(train[y[train] == c])[: SUBSET // 10] for c in range(10)]
        )
        xs = torch.from_numpy(x[subset].astype(np.float32) / 255.0).unsqueeze(1)
        ys = torch.from_numpy(y[subset])
        model = build(p)
        opt = torch.optim.Adam(model.parameters(), lr=p["lr"], eps=1e-7)
        loss_fn = nn.CrossEntropyLoss()
        best, wait, plateau_best, plateau_wait, lr = -1.0, 0, -1.0, 0, p["lr"]
        for epoch in range(1, MAX_EPOCHS + 1):
            model.train()
            for b in torch.randperm(len(ys)).split(BATCH):
                opt.zero_grad(set_to_none=True)
                loss_fn(model(xs[b]), ys[b]).backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                correct = sum(
                    (model(xv[i: i + 500]).argmax(1) == yv[i: i + 500]).sum().item() for i in range(0, len(yv), 500)
                )
            acc = correct / len(yv)
            events.append((time.time() - started, trial.number, acc))
            trial.report(acc, epoch)
            if acc > best:
                best, wait = acc, 0
            else:
                wait += 1
            if acc > plateau_best:
                plateau_best, plateau_wait = acc, 0
            else:
                plateau_wait += 1
                if plateau_wait >= LR_PATIENCE and lr > 1e-6:
                    lr, plateau_wait = max(lr * 0.1, 1e-6), 0
                    for g in opt.param_groups:
                        g["lr"] = lr
            if wait >= PATIENCE or time.time() >= deadline:
                break
            if trial.should_prune():
                raise optuna.TrialPruned()
        return best

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(),
    )
    study.enqueue_trial(SEED_LIKE)
    study.optimize(objective, timeout=max(1.0, deadline - time.time()), n_jobs=1)
    return events


def held_at(events, minute):
    inside = [acc for t, _, acc in events if t <= minute * 60]
    return max(inside) if inside else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tune", default="target/release/tune")
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--marks", default="1,2,3,5")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--only", choices=["tune", "optuna"], help="run one side (for a rerun)")
    ap.add_argument("--out", default="side")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    marks = [float(m) for m in args.marks.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows_path = out / "rows.csv"
    rows = list(csv.DictReader(rows_path.open())) if rows_path.exists() else []
    for seed in seeds:
        for tool in ["tune", "optuna"]:
            if args.only and tool != args.only:
                continue
            events = run_tune(args, seed, out) if tool == "tune" else run_optuna(args, seed)
            rows = [r for r in rows if not (r["tool"] == tool and int(r["seed"]) == seed)]
            for m in marks:
                epochs = sum(1 for t, _, _ in events if t <= m * 60)
                trials = len({n for t, n, _ in events if t <= m * 60})
                rows.append({"tool": tool, "seed": seed, "minute": m, "best_val_acc": held_at(events, m),
                             "trial_epochs": epochs, "trials": trials})
            (out / f"{tool}-{seed}-epochs.json").write_text(json.dumps(events))
            print(f"{tool} seed {seed}: " + ", ".join(
                f"{m:g} min {held_at(events, m):.4f}" for m in marks), file=sys.stderr, flush=True)
            with rows_path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["tool", "seed", "minute", "best_val_acc", "trial_epochs", "trials"])
                w.writeheader()
                w.writerows(rows)
    print("| minute | tune best val_acc | Optuna best val_acc | tune trial-epochs/h | Optuna trial-epochs/h |")
    print("| --- | --- | --- | --- | --- |")
    for m in marks:
        cells = []
        for key in ["best_val_acc", "trial_epochs"]:
            for tool in ["tune", "optuna"]:
                xs = [float(r[key]) for r in rows if r["tool"] == tool and float(r["minute"]) == m]
                if key == "trial_epochs":
                    xs = [x * 60 / m for x in xs]
                if not xs:
                    cells.append("–")
                    continue
                mean = statistics.fmean(xs)
                sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
                cells.append(f"{mean:.4f} ± {sd:.4f} (n={len(xs)})" if key == "best_val_acc" else f"{mean:.0f} ± {sd:.0f}")
        print(f"| {m:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
