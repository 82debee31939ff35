"""Paper reproductions: a claim, the runs that test it at small scale, and a verdict rule.

``stochopt reproduce NAME`` runs the reproduction's suites, prints the claim, the measurement
and the verdict, writes reports with figures, and with ``--record FILE`` rewrites the
reproduction's section of that file (``docs/reproductions.md``) from the measured records, so
no number is copied by hand.
"""

from __future__ import annotations

from stochopt_bench.reproductions._base import (
    Execute,
    Outcome,
    Reproduction,
    Verdict,
    compare,
    record_section,
)
from stochopt_bench.reproductions.adabelief import ADABELIEF
from stochopt_bench.reproductions.adadagrad import ADADAGRAD
from stochopt_bench.reproductions.batch_lr import BATCH_LR
from stochopt_bench.reproductions.bayesopt import BNN_SURROGATES, NOISY_EI
from stochopt_bench.reproductions.bilevel import (
    BSVRB_MULTIBLOCK,
    HYPER_CLEANING,
    REGULARIZATION_TUNING,
)
from stochopt_bench.reproductions.cbo import CBO_RELAXATION
from stochopt_bench.reproductions.eightbit import EIGHTBIT
from stochopt_bench.reproductions.last_iterate import LAST_ITERATE
from stochopt_bench.reproductions.online import OPTIMISTIC_OMD
from stochopt_bench.reproductions.schedules import SCHEDULES
from stochopt_bench.reproductions.sophia import SOPHIA
from stochopt_bench.reproductions.sso import SSO_TARGETS

__all__ = ["REPRODUCTIONS", "Execute", "Outcome", "Reproduction", "Verdict", "compare",
           "record_section"]

REPRODUCTIONS: dict[str, Reproduction] = {
    r.name: r for r in (ADABELIEF, SOPHIA, EIGHTBIT, SCHEDULES, BATCH_LR, ADADAGRAD,
                        LAST_ITERATE, NOISY_EI, BNN_SURROGATES, HYPER_CLEANING,
                        REGULARIZATION_TUNING, BSVRB_MULTIBLOCK, SSO_TARGETS, OPTIMISTIC_OMD,
                        CBO_RELAXATION)}
