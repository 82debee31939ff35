"""Thin adapters to other libraries' extension points; each submodule imports its library
(an optional extra) when it is imported, and nothing in stochopt imports them.

* :mod:`stochopt.integrations.transformers`: ``CurvatureTrainer`` /
  ``CurvatureTrainerMixin``, the Hugging Face ``Trainer`` with SophiaG, SophiaH and
  AdaHessian;
* :mod:`stochopt.integrations.lightning`: ``CurvatureModuleMixin``, a PyTorch Lightning
  ``LightningModule`` whose backward pass is the curvature optimizer's;
* :mod:`stochopt.integrations.optuna`: ``StochoptSampler``, an Optuna sampler that asks a
  :class:`stochopt.bayesopt.Study` for each trial's parameters.
"""

from __future__ import annotations

from stochopt.integrations._common import MicroBatchBackward, curvature_optimizer

__all__ = ["MicroBatchBackward", "curvature_optimizer"]
