#!/usr/bin/env python3
"""Optuna on tune's recorded learning curves: TPE + successive halving and TPE + Hyperband,
replayed on the same simulated clock as `tune bench search`, so their figures sit in one table.

    python3 -m venv venv && venv/bin/pip install optuna
    venv/bin/python benches/optuna_replay.py --table benches/curves/quick.jsonl.gz \\
        --space benches/curves/quick_record.toml --workers 1,2,8,32 --seeds 20 \\
        --budget-trials 64 --out optuna.csv
    tune bench search ... --extra optuna.csv

Each study runs Optuna's ask/tell API with W simulated workers. A worker that frees at time t
asks for a trial at once (all W start at t = 0, in worker order); the parameters are sampled
define-by-run from the space's [params] (depth keys n_conv / n_fc first, then only the blocks
they make active; fixed keys are just set), and the trial replays the recorded configuration
nearest to them, by the rule of tune's `src/study/replay.rs`: per key of either configuration,
1 when only one has it, the range-normalised difference for floats and ints (in logs where
log = true), 0 or 1 for choices and fixed values; ties go to the lowest recorded trial number.
A trial started at t reports epoch k at t + start_secs + sum(secs[:k]) (trial.report, then
trial.should_prune); pruned trials free their worker then, complete ones after their last
epoch with their best val_acc. The budget is B = budget_trials x (mean seconds of a whole
recorded trial) / W; no event at or after B happens.

Output: per-seed CSV rows `method,workers,seed,frac,best_val_acc,regret` for frac in 0.1, 0.25,
0.5, 1: the best val_acc reported by frac x B (earliest on ties; empty when none), and regret =
the table's best final value - the final value (max over its curve) of that trial's recorded
row. Methods: optuna-tpe+sha (SuccessiveHalvingPruner()) and optuna-tpe+hyperband
(HyperbandPruner(min_resource=1, max_resource=max_epochs)), TPESampler(seed=seed) otherwise
default (in Optuna 4.x/5.x that is multivariate TPE with constant_liar=True; the version is
printed); seeds are 0..N-1, and a run is repeatable (the study name is fixed, as Hyperband's
brackets hash it). A summary (mean best_val_acc and regret at the whole budget) goes to stderr.

Cost: Optuna's sampling is nearly all of it, about 0.01-0.02 s a trial; the command above
(20 seeds x 4 worker counts x 2 methods, 160 studies of 70-400 trials) took 4.5-5 minutes on
one core. --jobs N runs the studies in N processes; the output is the same.
"""
import argparse
import gzip
import heapq
import json
import math
import re
import sys
import time
import tomllib
import warnings

FRACTIONS = (0.1, 0.25, 0.5, 1.0)
METHODS = ("optuna-tpe+sha", "optuna-tpe+hyperband")
BLOCK = re.compile(r"^(conv|fc)(\d+)_(.+)$")
MIN_POSITIVE = sys.float_info.min  # f64::MIN_POSITIVE, as replay.rs clamps before ln


# ---------------------------------------------------------------------------------------------
# Search space (the subset of tune's grammar a [params] table uses)


def parse_dist(key, value):
    """('float', lo, hi, log) | ('int', lo, hi, step, log) | ('choice', [..]) | ('fixed', v)."""
    if not isinstance(value, dict):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            sys.exit(f"{key}: not a number, a name or a distribution")
        return ("fixed", value)
    log = bool(value.get("log", False))
    if "float" in value:
        lo, hi = value["float"]
        return ("float", float(lo), float(hi), log)
    if "int" in value:
        lo, hi = value["int"]
        return ("int", int(lo), int(hi), int(value.get("step", 1)), log)
    if "choice" in value:
        return ("choice", list(value["choice"]))
    sys.exit(f"{key}: needs one of int, float, choice")


def max_blocks(dists, kind):
    """How many blocks of a kind the space can produce (tune's max_blocks)."""
    d = dists.get(f"n_{kind}")
    if d is None:
        required = "channels" if kind == "conv" else "neurons"
        idx = [int(m.group(2)) for k in dists if (m := BLOCK.match(k)) and m.group(1) == kind and m.group(3) == required]
        return max(idx) + 1 if idx else 0
    if d[0] == "int":
        return d[2]
    if d[0] == "fixed":
        return int(d[1])
    if d[0] == "choice":
        return max(int(v) for v in d[1])
    sys.exit(f"n_{kind}: the number of blocks must be whole numbers")


def load_space(path):
    """The expanded space in tune's sampling order (depth keys first, then by name), and
    [study.training] max_epochs (None when absent)."""
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    dists, templates = {}, []
    for key, value in doc.get("params", {}).items():
        if "*" in key:
            templates.append((key, value))
        else:
            dists[key] = parse_dist(key, value)
    maxes = {kind: max_blocks(dists, kind) for kind in ("conv", "fc")}
    for template, value in templates:
        kind, sep, suffix = template.partition("*_")
        if not sep or kind not in maxes:
            sys.exit(f"{template}: not a block template (conv*_… or fc*_…)")
        for i in range(maxes[kind]):
            dists.setdefault(f"{kind}{i}_{suffix}", parse_dist(template, value))  # keyed entries win
    order = sorted(dists, key=lambda k: (k not in ("n_conv", "n_fc"), k))
    max_epochs = doc.get("study", {}).get("training", {}).get("max_epochs")
    return [(k, dists[k]) for k in order], max_epochs


def is_active(key, partial):
    m = BLOCK.match(key)
    if not m:
        return True
    n = partial.get(f"n_{m.group(1)}")
    return not isinstance(n, int) or int(m.group(2)) < n


def sample(trial, space):
    """Define-by-run: depth keys first, then only the keys their blocks make active."""
    params = {}
    for key, d in space:
        if not is_active(key, params):
            continue
        kind = d[0]
        if kind == "fixed":
            params[key] = d[1]
        elif kind == "float":
            params[key] = trial.suggest_float(key, d[1], d[2], log=d[3])
        elif kind == "int":
            params[key] = trial.suggest_int(key, d[1], d[2], step=d[3], log=d[4])
        else:
            params[key] = trial.suggest_categorical(key, d[1])
    return params


# ---------------------------------------------------------------------------------------------
# Nearest recorded configuration (src/study/replay.rs: `distance`, `nearest`)


def same(x, y):
    """tune's Value equality: Int(16) and Float(16.0) differ, as do a number and a name."""
    return type(x) is type(y) and x == y


def key_distance(d, x, y):
    if d is not None and d[0] in ("float", "int"):
        if not (_is_num(x) and _is_num(y)):
            return 1.0
        f, span = _numeric(d)
        return abs((f(x) - f(y)) / span) if span > 0.0 else 0.0
    return 0.0 if same(x, y) else 1.0


def sq_distance(dists, a, b):
    """Squared distance, summed over the union of keys in name order as replay.rs does (the
    square root is monotone, so the nearest row is the same and ties stay exact)."""
    total = 0.0
    for k in sorted(a.keys() | b.keys()):
        if k in a and k in b:
            dk = key_distance(dists.get(k), a[k], b[k])
        else:
            dk = 1.0
        total += dk * dk
    return total


def nearest(rows, dists, params):
    """Index of the nearest row; rows are sorted by trial number, so a strict < keeps the lowest.
    (The plain rule, used to check `Nearest`.)"""
    best, best_i = math.inf, 0
    for i, row in enumerate(rows):
        d = sq_distance(dists, params, row["params"])
        if d < best:
            best, best_i = d, i
    return best_i


class Nearest:
    """`nearest`, vectorised over rows with numpy and bit for bit the same: per key in name
    order, the same IEEE operations (logs by math.log, as Rust's ln is libm's), summed in the
    same order (a key neither side has adds an exact 0)."""

    def __init__(self, rows, dists):
        import numpy as np

        self.np, self.dists, self.n = np, dists, len(rows)
        keys = sorted(set(dists) | {k for r in rows for k in r["params"]})
        self.cols = []  # (key, present mask, kind, data...)
        for k in keys:
            vals = [r["params"].get(k, _MISSING) for r in rows]
            present = np.array([v is not _MISSING for v in vals])
            d = dists.get(k)
            if d is not None and d[0] in ("float", "int"):
                f, span = _numeric(d)
                ok = np.array([_is_num(v) for v in vals])
                fv = np.array([f(v) if _is_num(v) else 0.0 for v in vals], dtype=np.float64)
                self.cols.append((k, present, "num", ok, fv, f, span))
            else:
                codes = {}
                cv = np.array([codes.setdefault((type(v), v), len(codes)) if v is not _MISSING else -1 for v in vals])
                self.cols.append((k, present, "cat", codes, cv))

    def __call__(self, params):
        np = self.np
        total = np.zeros(self.n)
        for k, present, kind, *data in self.cols:
            if k not in params:
                d = present.astype(np.float64)  # 1 where only the row has it
            else:
                x = params[k]
                if kind == "num":
                    ok, fv, f, span = data
                    if not _is_num(x):
                        d = np.ones(self.n)
                    elif span > 0.0:
                        d = np.where(ok, np.abs((f(x) - fv) / span), 1.0)
                    else:
                        d = np.where(ok, 0.0, 1.0)
                else:
                    codes, cv = data
                    d = (cv != codes.get((type(x), x), -2)).astype(np.float64)
                d = np.where(present, d, 1.0)  # 1 where only the proposal has it
            total += d * d
        return int(np.argmin(total))  # the first minimum: the lowest trial number on ties


_MISSING = object()


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numeric(d):
    lo, hi, log = (d[1], d[2], d[3]) if d[0] == "float" else (float(d[1]), float(d[2]), d[4])
    f = (lambda v: math.log(max(float(v), MIN_POSITIVE))) if log else float
    return f, f(hi) - f(lo)


# ---------------------------------------------------------------------------------------------
# The simulated study


def load_table(path):
    opener = gzip.open if path.endswith(".gz") else open
    rows = []
    with opener(path, "rt") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                r = json.loads(line)
                if not r["val_acc"] or len(r["val_acc"]) != len(r["secs"]):
                    sys.exit(f"{path}: line {n}: val_acc and secs must be non-empty and of one length")
                r.setdefault("start_secs", 0.0)
                rows.append(r)
    if not rows:
        sys.exit(f"{path}: the table holds no curve")
    rows.sort(key=lambda r: r["trial"])
    for r in rows:
        r["final"] = max(r["val_acc"])
        r["total"] = r["start_secs"] + sum(r["secs"])
        # cum[k-1] = sum(secs[:k]): epoch k reports at t + start_secs + cum[k-1]
        r["cum"] = [sum(r["secs"][:k]) for k in range(1, len(r["secs"]) + 1)]
    return rows


def run_study(optuna, rows, space, find, method, workers, seed, budget, max_epochs, cache):
    """One simulated study; returns its reports [(at, val_acc, row index)] in time order and
    how many trials it asked for."""
    if method == "optuna-tpe+sha":
        pruner = optuna.pruners.SuccessiveHalvingPruner()
    else:
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs)
    # A fixed study name: Hyperband assigns brackets by a hash of the name and trial number,
    # and a generated name would make runs unrepeatable.
    study = optuna.create_study(
        study_name=f"{method}-w{workers}-s{seed}",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
    )
    reports, heap, running = [], [], {}

    running_numbers = []

    def start(w, t):
        trial = study.ask()
        running_numbers.append(trial.number)
        params = sample(trial, space)
        key = json.dumps(params, sort_keys=True)
        i = cache.get(key)
        if i is None:
            i = cache[key] = find(params)
        running[w] = (trial, i, t, [])
        heapq.heappush(heap, (t + rows[i]["start_secs"] + rows[i]["cum"][0], w, 1))

    for w in range(workers):
        start(w, 0.0)
    while heap:
        at, w, k = heapq.heappop(heap)
        if at >= budget:
            break  # the study stops at B; trials still running are cut off
        trial, i, t0, seen = running[w]
        row = rows[i]
        value = row["val_acc"][k - 1]
        seen.append(value)
        reports.append((at, value, i))
        trial.report(value, k)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            start(w, at)
        elif k == len(row["val_acc"]):
            study.tell(trial, max(seen))
            start(w, at)
        else:
            heapq.heappush(heap, (t0 + row["start_secs"] + row["cum"][k], w, k + 1))
    return reports, len(running_numbers)


def outcomes(reports, budget, best_final, rows):
    """(frac, best_val_acc, regret) per fraction, as search_bench.rs's `outcomes` reads them."""
    out = []
    for frac in FRACTIONS:
        best = None
        for at, value, i in reports:
            if at <= frac * budget + 1e-9 and (best is None or value > best[1]):
                best = (at, value, i)
        if best is None:
            out.append((frac, math.nan, math.nan))
        else:
            out.append((frac, best[1], best_final - rows[best[2]]["final"]))
    return out


_CTX = {}  # what every study shares (set once in main; forked jobs inherit it)


def _one(task):
    """One (workers, method, seed) study: its figures per fraction and its trial count."""
    workers, method, seed, budget = task
    c = _CTX
    reports, n_trials = run_study(c["optuna"], c["rows"], c["space"], c["find"], method, workers, seed, budget,
                                  c["max_epochs"], c["cache"])
    return outcomes(reports, budget, c["best_final"], c["rows"]), n_trials


def fmt(x):
    return "" if math.isnan(x) else repr(x)


def main():
    ap = argparse.ArgumentParser(
        description="Replay recorded learning curves with Optuna (TPE + successive halving, TPE + Hyperband) "
        "on tune's simulated clock; writes per-seed rows for `tune bench search --extra`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n")[1],
    )
    ap.add_argument("--table", required=True, help="learning-curve table (gzip JSON lines), e.g. benches/curves/quick.jsonl.gz")
    ap.add_argument("--space", required=True, help="the space it was recorded from, e.g. benches/curves/quick_record.toml")
    ap.add_argument("--workers", default="1,2,8,32", help="comma-separated worker counts (default 1,2,8,32)")
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (default 20)")
    ap.add_argument("--budget-trials", type=float, default=64.0,
                    help="budget in whole recorded trials' time, over all workers (default 64)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--jobs", type=int, default=1,
                    help="studies run in parallel processes (default 1; the output is the same for any value)")
    ap.add_argument("--out", required=True, help="CSV to write: method,workers,seed,frac,best_val_acc,regret")
    args = ap.parse_args()

    import optuna  # after argparse, so --help works without it

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no per-trial lines; real warnings stay
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    workers_list = [int(w) for w in args.workers.split(",") if w.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            sys.exit(f"--methods: `{m}` is not one of {', '.join(METHODS)}")
    if not workers_list or min(workers_list) < 1 or args.seeds < 1 or args.budget_trials <= 0 or args.jobs < 1:
        sys.exit("--workers, --seeds, --budget-trials and --jobs must be positive")

    rows = load_table(args.table)
    space, max_epochs = load_space(args.space)
    dists = dict(space)
    epochs = max(len(r["val_acc"]) for r in rows)
    if max_epochs is None:
        max_epochs = epochs
    elif max_epochs != epochs:
        print(f"note: [study.training] max_epochs = {max_epochs} but the longest curve has {epochs} epochs; "
              f"Hyperband's max_resource is {max_epochs}, trials replay their whole curve", file=sys.stderr)
    best_final = max(r["final"] for r in rows)
    mean_secs = sum(r["total"] for r in rows) / len(rows)
    print(f"table {args.table}: {len(rows)} curves x <={epochs} epochs, best final val_acc {best_final:.4f}, "
          f"a whole trial {mean_secs:.1f} s on average; optuna {optuna.__version__}", file=sys.stderr)

    started = time.time()
    _CTX.update(optuna=optuna, rows=rows, space=space, find=Nearest(rows, dists), max_epochs=max_epochs,
                best_final=best_final, cache={})
    tasks = [(workers, method, seed, args.budget_trials * mean_secs / workers)
             for workers in workers_list for method in methods for seed in range(args.seeds)]
    pool = None
    if args.jobs > 1:
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(args.jobs)  # children inherit _CTX
    results = pool.imap(_one, tasks) if pool else map(_one, tasks)
    lines = ["method,workers,seed,frac,best_val_acc,regret"]
    summary = {}
    for (workers, method, seed, _), (figures, n_trials) in zip(tasks, results):
        finals, counts = summary.setdefault((workers, method), ([], []))
        counts.append(n_trials)
        for frac, best, regret in figures:
            lines.append(f"{method},{workers},{seed},{frac},{fmt(best)},{fmt(regret)}")
            if frac == 1.0:
                finals.append((best, regret))
        if seed == args.seeds - 1:
            print(f"  {workers} workers, {method}: {args.seeds} runs done, {sum(counts) / len(counts):.0f} trials "
                  f"a run ({time.time() - started:.0f} s)", file=sys.stderr)
    if pool:
        pool.close()
        pool.join()
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")

    def mean(xs):
        xs = [x for x in xs if not math.isnan(x)]
        return sum(xs) / len(xs) if xs else math.nan

    print(f"{'workers':>7}  {'method':<22} {'seeds':>5} {'@100%':>8} {'regret':>8}", file=sys.stderr)
    for (workers, method), (finals, _) in summary.items():
        print(f"{workers:>7}  {method:<22} {len(finals):>5} {mean([b for b, _ in finals]):>8.4f} "
              f"{mean([r for _, r in finals]):>8.4f}", file=sys.stderr)
    print(f"{len(lines) - 1} rows -> {args.out} in {time.time() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
