"""Benchmark: the same simulation workload timed on an earlier commit and on the working tree, in
alternating processes, so that both see the same machine load (these machines are noisy).

Workload: 2,000 virtual patients of the default population (``sample(2000, seed=5)``), one year
of pembrolizumab 200 mg Q3W plus bexmarilimab 1 mg/kg Q3W, daily tumor volume; each process
compiles once, then reports the best of 3 warm calls in patient-years per second and the mean
number of solver steps per patient (equal steps mean the two solve the same problem the same way).

Reproduce with:  .venv/bin/python bench/before_after.py --before 81279fc [--rounds 2]

The earlier commit is checked out with ``git worktree`` in a temporary directory (removed after);
both sides run this repository's .venv interpreter, each importing its own ``immunopd`` (checked).
"after" is the working tree as it is, uncommitted changes included (the figures line says so);
rounds alternate which side runs first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKLOAD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import immunopd as ip
from immunopd.population import sample
pop = sample(2000, seed=5)
params = pop.params()
regimen = "pembrolizumab 200 mg q3w; bexmarilimab 1 mg/kg q3w"
times = np.arange(0, 366.0)
ds = ip.simulate(regimen, params, times=times, outputs=["tumor_volume"])
best = float("inf")
for _ in range(3):
    t0 = time.perf_counter()
    ip.simulate(regimen, params, times=times, outputs=["tumor_volume"])
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"module": ip.__file__, "patient_years_per_s": 2000 / best, "steps": float(ds.num_steps.mean())}))
"""


def run(tree: str) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKLOAD, tree], cwd=tree, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the workload failed in {tree} (exit {out.returncode}):\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    expected = os.path.realpath(os.path.join(tree, "immunopd", "__init__.py"))
    if os.path.realpath(result["module"]) != expected:
        raise RuntimeError(f"{tree}: imported immunopd from {result['module']}, not {expected}")
    return result


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the earlier commit (any git revision)")
    ap.add_argument("--rounds", type=int, default=2, help="before/after pairs, alternating (default 2)")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds = {args.rounds} is not allowed; allowed: an integer >= 1")
    resolved = git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{args.before}^{{commit}}")
    if resolved.returncode != 0:
        ap.error(f"--before = {args.before!r} is not allowed; allowed: a git revision naming a commit of this repository")
    rev = resolved.stdout.strip()[:12]
    head = git("rev-parse", "--short=12", "HEAD").stdout.strip()
    dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    with tempfile.TemporaryDirectory() as tmp:
        before_tree = os.path.join(tmp, "before")
        added = git("worktree", "add", "--detach", "-q", before_tree, rev)
        if added.returncode != 0:
            raise RuntimeError(f"git worktree add failed: {added.stderr.strip()}")
        try:
            rows = []
            for k in range(args.rounds):  # ABBA: each side first in half of the rounds
                order = (("before", before_tree), ("after", ROOT)) if k % 2 == 0 else (("after", ROOT), ("before", before_tree))
                rows.extend((side, run(tree)) for side, tree in order)
        finally:
            removed = git("worktree", "remove", "--force", before_tree)
            git("worktree", "prune")
            if removed.returncode != 0:
                print(f"warning: git worktree remove {before_tree} failed: {removed.stderr.strip()}", file=sys.stderr)
    for side, r in rows:
        print(f"{side:<7} {r['patient_years_per_s']:8.0f} patient-years/s  {r['steps']:6.1f} steps/patient")
    mean = {side: sum(r["patient_years_per_s"] for s, r in rows if s == side) / args.rounds for side in ("before", "after")}
    print(f"bench: before_after before={rev} after={head}{'+uncommitted' if dirty else ''} rounds={args.rounds} "
          f"before_py_per_s={mean['before']:.0f} "
          f"after_py_per_s={mean['after']:.0f} ratio_after_vs_before={mean['after'] / mean['before']:.2f}")
    print(f"reproduce: .venv/bin/python bench/before_after.py --before {rev} --rounds {args.rounds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
