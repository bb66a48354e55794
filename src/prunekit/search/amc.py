"""A small reinforcement-learning searcher in the spirit of AMC (He et al. 2018, "AMC: AutoML
for Model Compression and Acceleration on Mobile Devices").

AMC walks the network layer by layer; at layer ``l`` an agent sees an embedding of the layer
(its index, size, cost, the action taken at the previous layer) and picks the layer's keep
ratio; the episode's pruned model is clipped to the budget and its proxy accuracy is the
reward. Here, as in AMC, the state of layer ``l`` is ``[1, l / L, units_l / max units, share of
the budget's cost the layer can free, action at layer l-1]`` and the budget is enforced by
projection (:meth:`~prunekit.search.space.SearchSpace.project`), not by the agent.

Simplified against the paper: the policy is linear-Gaussian in logit space
(``z_l ~ N(theta . s_l, sigma^2)``, keep ratio ``low_l + (1 - low_l) * sigmoid(z_l)``) trained by
REINFORCE with a moving-average baseline, normalised (clipped) advantages and a step scaled by
the state's norm (Williams 1992), instead of
DDPG with an actor-critic pair and a replay buffer; the exploration noise decays geometrically
per episode as in AMC. The policy is not stored: it is rebuilt from the study's finished trials
(their actions and rewards, in trial order) each time a trial is sampled, so a resumed search
continues the same learning, and the sampler is an Optuna sampler like the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from prunekit.errors import ConfigError
from prunekit.search.sampling import KeepRatioSampler

_EPS = 1e-4


class AmcSampler(KeepRatioSampler):
    """Layer-by-layer Gaussian policy over keep ratios, learned by REINFORCE.

    Args:
        names: the searched parameters, in layer order.
        lows: each layer's smallest keep ratio.
        features: per layer, ``[units share, cost share]`` (each in [0, 1]).
        seed: the noise of trial ``n`` is drawn from ``numpy.random.default_rng([seed, n])``.
        lr: policy-gradient step; sigma0 / decay / sigma_min: exploration noise schedule.
    """

    label = "amc"

    def __init__(
        self,
        names: Sequence[str],
        lows: Sequence[float],
        features: Sequence[Sequence[float]],
        *,
        seed: int = 0,
        lr: float = 0.2,
        sigma0: float = 1.0,
        decay: float = 0.97,
        sigma_min: float = 0.15,
        baseline_momentum: float = 0.8,
    ) -> None:
        if not (len(names) == len(lows) == len(features)) or not names:
            raise ConfigError("amc: names, lows and features must be non-empty and of one length")
        super().__init__(names, lows, seed)
        self.features = np.asarray(features, dtype=np.float64)
        self.lr = lr
        self.sigma0, self.decay, self.sigma_min = sigma0, decay, sigma_min
        self.momentum = baseline_momentum

    def sigma(self, number: int) -> float:
        return max(self.sigma_min, self.sigma0 * self.decay**number)

    def state(self, layer: int, previous: float) -> np.ndarray:
        n = len(self.names)
        return np.array([1.0, layer / max(n - 1, 1), *self.features[layer], previous])

    def to_logit(self, layer: int, keep: float) -> float:
        low = self.lows[layer]
        u = min(max((keep - low) / (1.0 - low) if low < 1 else 0.5, _EPS), 1 - _EPS)
        return math.log(u / (1 - u))

    def to_keep(self, layer: int, z: float) -> float:
        low = self.lows[layer]
        return low + (1.0 - low) / (1.0 + math.exp(-z))

    def policy(self, study: optuna.Study) -> np.ndarray:
        """``theta`` after REINFORCE over the study's finished trials, in trial order."""
        if len(study.directions) != 1:
            raise ConfigError("amc searches one objective; use nsga2 for several")
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        theta = np.zeros(self.features.shape[1] + 3)
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        rewards: list[float] = []
        baseline = 0.0
        for trial in sorted(trials, key=lambda t: t.number):
            if any(name not in trial.params for name in self.names) or trial.value is None:
                continue
            reward = sign * float(trial.value)
            rewards.append(reward)
            baseline = reward if len(rewards) == 1 else (
                self.momentum * baseline + (1 - self.momentum) * reward
            )  # fmt: skip
            spread = float(np.std(rewards)) if len(rewards) > 1 else 1.0
            advantage = min(max((reward - baseline) / (spread + 1e-8), -3.0), 3.0)
            theta = theta + self.lr * advantage * self._grad(theta, trial)
        return theta

    def _grad(self, theta: np.ndarray, trial: FrozenTrial) -> np.ndarray:
        sigma = self.sigma(trial.number)
        grad = np.zeros_like(theta)
        previous = 1.0
        for layer, name in enumerate(self.names):
            s = self.state(layer, previous)
            z = self.to_logit(layer, float(trial.params[name]))
            grad += (z - float(theta @ s)) / sigma**2 * s / float(s @ s)
            previous = float(trial.params[name])
        return grad / len(self.names)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        theta = self.policy(study)
        rng = np.random.default_rng([self.seed, trial.number])
        sigma = self.sigma(trial.number)
        params: dict[str, Any] = {}
        previous = 1.0
        for layer, name in enumerate(self.names):
            z = float(theta @ self.state(layer, previous)) + sigma * float(rng.standard_normal())
            keep = min(max(self.to_keep(layer, z), self.lows[layer]), 1.0)
            params[name] = keep
            previous = keep
        return params
