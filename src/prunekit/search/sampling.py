"""The base of prunekit's own Optuna samplers: one float keep ratio per searched parameter.

Both :class:`~prunekit.search.searchers.NumberedRandomSampler` and
:class:`~prunekit.search.amc.AmcSampler` sample every parameter jointly (``sample_relative``)
over the same space, ``[low, 1]`` per parameter; this base holds that space and the fallback
Optuna calls for a parameter outside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial

from prunekit.errors import ConfigError


class KeepRatioSampler(BaseSampler):
    """A sampler over keep ratios ``names[i]`` in ``[lows[i], 1]``; subclasses implement
    ``sample_relative``. ``label`` names the searcher in errors."""

    label = "sampler"

    def __init__(self, names: Sequence[str], lows: Sequence[float], seed: int) -> None:
        self.names, self.lows, self.seed = list(names), [float(x) for x in lows], seed

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {
            n: FloatDistribution(low, 1.0) for n, low in zip(self.names, self.lows, strict=True)
        }

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        """A uniform draw for a parameter outside the joint space, reproducible per trial."""
        rng = np.random.default_rng([self.seed, trial.number, len(param_name)])
        if isinstance(param_distribution, FloatDistribution):
            return float(rng.uniform(param_distribution.low, param_distribution.high))
        raise ConfigError(f"{self.label} samples float keep ratios only, not {param_name!r}")
