"""Automatic per-layer allocation search under a MACs, params, latency or size budget, on
Optuna and Ray.

:func:`search` (its options: one :class:`SearchConfig`) traces and scores a model once, then
searches one keep ratio per layer (or per stage, :mod:`prunekit.search.stages`) with a registered
searcher (:data:`SEARCHERS`: random, TPE, NSGA-II, CMA-ES, a genetic algorithm and
an AMC-style policy-gradient agent), projecting every candidate onto the budget before it is
scored. The study is stored (a journal file by default) and resumes after a stop; trials can
run on Ray workers. The :class:`SearchResult` holds every trial, the Pareto front, a table, a
plot, JSON and a recipe that ``prunekit prune`` replays.
"""

from prunekit.search.amc import AmcSampler
from prunekit.search.api import search
from prunekit.search.budget import SEARCH_METRICS, Budget, parse_budget
from prunekit.search.config import SEARCH_OPTIONS, SearchConfig
from prunekit.search.finetune import ChosenFinetune, finetune_chosen
from prunekit.search.objectives import OBJECTIVES, Objective, make_objective
from prunekit.search.result import SearchResult, TrialRecord, pareto_front
from prunekit.search.searchers import SEARCHERS, Searcher, get_searcher
from prunekit.search.space import Dimension, SearchSpace
from prunekit.search.stages import RESOLUTION, SPACES, assign_stages

__all__ = [
    "OBJECTIVES",
    "RESOLUTION",
    "SEARCHERS",
    "SEARCH_METRICS",
    "SEARCH_OPTIONS",
    "SPACES",
    "AmcSampler",
    "Budget",
    "ChosenFinetune",
    "Dimension",
    "Objective",
    "SearchConfig",
    "SearchResult",
    "SearchSpace",
    "Searcher",
    "TrialRecord",
    "assign_stages",
    "finetune_chosen",
    "get_searcher",
    "make_objective",
    "pareto_front",
    "parse_budget",
    "search",
]
