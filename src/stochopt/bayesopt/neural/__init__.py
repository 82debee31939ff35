"""Neural-network surrogates from the BNN study (Li, Rudner & Wilson, ICLR 2024): deep kernel
learning, deep ensembles and HMC over weights. The infinite-width network is the GP with
``kernel="nngp"``."""

from __future__ import annotations

from stochopt.bayesopt.neural.base import SampledFunctions, posterior_from_samples
from stochopt.bayesopt.neural.dkl import DKL
from stochopt.bayesopt.neural.ensemble import DeepEnsemble
from stochopt.bayesopt.neural.hmc import HMCBNN, DualAveraging, hmc

__all__ = ["DKL", "HMCBNN", "DeepEnsemble", "DualAveraging", "SampledFunctions", "hmc",
           "posterior_from_samples"]
