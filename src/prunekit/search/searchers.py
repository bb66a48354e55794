"""The searchers: Optuna samplers by registry name (``prunekit list`` shows them).

* ``random``: uniform keep ratios; trial ``n`` draws from ``default_rng([seed, n])``, so a
  trial's candidate does not depend on which worker runs it or on a restart.
* ``tpe``: tree-structured Parzen estimator (Bergstra et al. 2011), multivariate.
* ``nsga2``: NSGA-II (Deb et al. 2002), two objectives: score (max) and cost ratio (min); the
  result is a Pareto front.
* ``cmaes``: CMA-ES (Hansen 2016), one objective; needs the ``cmaes`` package.
* ``ga``: a genetic algorithm on one objective (Optuna's NSGA-II selection, crossover and
  mutation with a single objective).
* ``amc``: the layer-by-layer policy-gradient agent of :mod:`prunekit.search.amc`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial

from prunekit.errors import ConfigError
from prunekit.registry import Registry
from prunekit.search.amc import AmcSampler
from prunekit.search.sampling import KeepRatioSampler


@dataclass(frozen=True)
class SpaceInfo:
    """What a sampler factory may use: parameter names, lower bounds, per-layer features
    (units share, cost share), the trial budget and the seed."""

    names: Sequence[str]
    lows: Sequence[float]
    features: Sequence[Sequence[float]]
    trials: int
    seed: int


@dataclass(frozen=True)
class Searcher:
    """A registered searcher: its sampler factory and whether it optimises two objectives."""

    build: Callable[[SpaceInfo], BaseSampler]
    multi_objective: bool = False
    description: str = ""
    numbered: bool = False
    """Trial ``n``'s candidate depends only on the seed, ``n`` and finished trials (not on
    the sampler's own random state), so a resumed search keeps the seed as it is."""


class NumberedRandomSampler(KeepRatioSampler):
    """Uniform sampling where trial ``n``'s candidate comes from ``default_rng([seed, n])``:
    the same trials with one worker or many, before or after a restart."""

    label = "random"

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, trial.number])
        draws = rng.uniform(size=len(self.names))
        return {n: low + (1 - low) * float(u)
                for n, low, u in zip(self.names, self.lows, draws, strict=True)}  # fmt: skip


def _population(info: SpaceInfo) -> int:
    """A population small enough for several generations within the trial budget."""
    return max(4, min(50, info.trials // 4))


def _cmaes(info: SpaceInfo) -> BaseSampler:
    try:
        import cmaes  # noqa: F401
    except ImportError:
        raise ConfigError(
            "searcher 'cmaes' needs the cmaes package (pip install cmaes); or use 'ga'"
        ) from None
    return optuna.samplers.CmaEsSampler(
        seed=info.seed, n_startup_trials=1, warn_independent_sampling=False
    )


SEARCHERS: Registry[Searcher] = Registry(
    "searcher",
    {
        "random": Searcher(
            lambda i: NumberedRandomSampler(i.names, i.lows, i.seed),
            description="uniform keep ratios, reproducible per trial number",
            numbered=True,
        ),
        "tpe": Searcher(
            lambda i: optuna.samplers.TPESampler(
                seed=i.seed, multivariate=True, n_startup_trials=max(2, min(10, i.trials // 4))
            ),
            description="tree-structured Parzen estimator (Bergstra et al. 2011)",
        ),
        "nsga2": Searcher(
            lambda i: optuna.samplers.NSGAIISampler(population_size=_population(i), seed=i.seed),
            multi_objective=True,
            description="NSGA-II on score and cost (Deb et al. 2002): a Pareto front",
        ),
        "cmaes": Searcher(_cmaes, description="CMA-ES (Hansen 2016), one objective"),
        "ga": Searcher(
            lambda i: optuna.samplers.NSGAIISampler(population_size=_population(i), seed=i.seed),
            description="genetic algorithm on one objective",
        ),
        "amc": Searcher(
            lambda i: AmcSampler(i.names, i.lows, i.features, seed=i.seed),
            description="layer-by-layer RL agent in the spirit of AMC (He et al. 2018)",
            numbered=True,
        ),
    },
)
"""Searchers by name."""


def get_searcher(name: str) -> Searcher:
    """The registered searcher ``name`` (an unknown name is an error with a did-you-mean)."""
    return SEARCHERS.get(name)
