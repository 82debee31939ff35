"""Bayesian optimization: log10 simple regret against evaluations, every method side by side.

    python benchmarks/bayesopt.py [--methods gp-logei,random,...] [--problems branin,...]
        [--noise both|none|noisy] [--seeds 10] [--jobs 2] [--out results/bayesopt]
    python benchmarks/bayesopt.py --report     # tables and figures from what has run

Problems (n_initial, budget): Branin (5, 40), Hartmann-6 (12, 80), Ackley-5 (10, 100); noisy
variants add N(0, sigma^2) to every observation (sigma: Branin 2, Hartmann-6 0.1, Ackley-5 1).
Methods: stochopt's GP with log-EI, Frazier's noisy EI and the discretized KG; the BNN study's
surrogates (I-BNN, DKL, deep ensemble, HMC) with log-EI; random search; and BoTorch's
SingleTaskGP + qLogNoisyExpectedImprovement (optimize_acqf, 10 restarts, 512 raw samples),
started from the same Sobol design. Seeds are paired: a one-sided Wilcoxon signed-rank test
asks whether each method's final regret is below random search's. The study itself lives in
``stochopt_bench.bo`` (shared with ``stochopt reproduce``); runs resume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stochopt._io import write_text_atomic
from stochopt_bench.bo import METHODS, PROBLEMS, report, run_all


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--noise", choices=["both", "none", "noisy"], default="both")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/bayesopt"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    parser.add_argument("--report", action="store_true", help="only tabulate finished runs")
    args = parser.parse_args(argv)
    if not args.report:
        methods, problems = args.methods.split(","), args.problems.split(",")
        for names, known in ((methods, METHODS), (problems, list(PROBLEMS))):
            unknown = sorted(set(names) - set(known))
            if unknown:
                parser.error(f"unknown {unknown}; choose from {known}")
        noises = {"both": (False, True), "none": (False,), "noisy": (True,)}[args.noise]
        jobs = [(args.out, p, n, m, s) for m in methods for p in problems for n in noises
                for s in range(args.seeds)]
        try:
            run_all(jobs, args.jobs, lambda message: print(message, flush=True))
        except (ValueError, TypeError, OSError) as error:  # checked before any run starts
            parser.error(str(error))
    text = report(args.out, args.figures)
    write_text_atomic(args.out / "summary.md", text + "\n")
    print(text)


if __name__ == "__main__":
    main()
