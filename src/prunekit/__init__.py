"""prunekit: importance estimation and pruning for PyTorch."""

__version__ = "0.1.0"
