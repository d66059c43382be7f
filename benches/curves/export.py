#!/usr/bin/env python3
"""Turns a recording study's journal into a learning-curve table for `tune bench search`.

    benches/curves/export.py JOURNAL OUT.jsonl.gz

One line per complete trial: {"trial": n, "params": {...}, "val_acc": [...], "secs": [...],
"start_secs": s}, epoch by epoch as the trial reported them; start_secs is the trial process's
time outside its epochs (start-up, data loading), which the simulated clock charges too. Trials still running, failed or infeasible are left
out, so the table can be exported again (and grows) while the recording goes on.
"""
import gzip
import json
import sys


def main(journal, out):
    created, epochs, complete, finished = {}, {}, set(), {}
    with open(journal) as f:
        for line in f:
            e = json.loads(line)
            n = e["number"]
            if e["event"] == "created" and not e.get("infeasible"):
                created[n] = e["params"]
                epochs[n] = []
            elif e["event"] == "epoch" and n in epochs:
                m = e["metrics"]
                if m["epoch"] == len(epochs[n]) + 1:
                    epochs[n].append((m["val_acc"], m["secs"]))
            elif e["event"] == "finished" and e["state"] == "complete":
                complete.add(n)
                finished[n] = e["secs"]
    rows = 0
    with gzip.open(out, "wt", compresslevel=9) as f:
        for n in sorted(complete & set(created)):
            curve = epochs[n]
            row = {"trial": n, "params": created[n], "val_acc": [v for v, _ in curve], "secs": [round(s, 3) for _, s in curve],
                   "start_secs": round(max(0.0, finished[n] - sum(s for _, s in curve)), 3)}
            f.write(json.dumps(row, sort_keys=True) + "\n")
            rows += 1
    print(f"{out}: {rows} curves")


if __name__ == "__main__":
    main(*sys.argv[1:3])
