"""Automatic per-layer allocation search under a MACs or params budget, on Optuna and Ray.

:func:`search` traces and scores a model once, then searches one keep ratio per layer with a
registered searcher (:data:`SEARCHERS`: random, TPE, NSGA-II, CMA-ES, a genetic algorithm and
an AMC-style policy-gradient agent), projecting every candidate onto the budget before it is
scored. The study is stored (a journal file by default) and resumes after a stop; trials can
run on Ray workers. The :class:`SearchResult` holds every trial, the Pareto front, a table, a
plot, JSON and a recipe that ``prunekit prune`` replays.
"""

from prunekit.search.amc import AmcSampler
from prunekit.search.api import search
from prunekit.search.objectives import OBJECTIVES, Objective, make_objective
from prunekit.search.result import SearchResult, TrialRecord, pareto_front
from prunekit.search.searchers import SEARCHERS, Searcher, get_searcher
from prunekit.search.space import Dimension, SearchSpace

__all__ = [
    "OBJECTIVES",
    "SEARCHERS",
    "AmcSampler",
    "Dimension",
    "Objective",
    "SearchResult",
    "SearchSpace",
    "Searcher",
    "TrialRecord",
    "get_searcher",
    "make_objective",
    "pareto_front",
    "search",
]
