"""Reproducible runs."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global random generators (CPU and every GPU).

    Loaders from :func:`prunekit.data.make_loader` own their generator and do not depend on this.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
