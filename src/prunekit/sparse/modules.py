"""Linear layers that compute with a sparse weight: CSR / block-CSR, and 2:4 semi-structured.

They are inference modules (no gradients for the weight) that give the outputs of the dense
``nn.Linear`` they replace, up to the order of floating-point sums. :func:`prunekit.sparse.sparsify`
puts them in a model only where a measurement says they are faster.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prunekit.errors import ConfigError

LAYOUTS = ("csr", "bsr")


def is_two_of_four(weight: Tensor) -> bool:
    """Whether every 4 consecutive weights along the input dimension hold at most 2 nonzeros
    (the pattern of NVIDIA sparse tensor cores; Mishra et al. 2021)."""
    if weight.ndim != 2 or weight.shape[1] % 4:
        return False
    groups = (weight != 0).reshape(weight.shape[0], -1, 4).sum(dim=-1)
    return bool((groups <= 2).all())


class SparseLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` held as a torch sparse CSR or BSR tensor.

    Args:
        weight: the dense ``(out_features, in_features)`` weight (zeros are dropped).
        bias: the bias, or None.
        layout: ``"csr"`` or ``"bsr"``.
        blocksize: the ``(rows, cols)`` tile of the BSR layout; it must divide the weight.
    """

    weight: Tensor
    bias: Tensor | None

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        layout: str = "csr",
        blocksize: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if weight.ndim != 2:
            raise ConfigError(f"SparseLinear needs a 2-D weight, got shape {tuple(weight.shape)}")
        dense = weight.detach()
        if layout not in LAYOUTS:
            raise ConfigError(f"SparseLinear layout must be one of {LAYOUTS}, got {layout!r}")
        if layout == "bsr" and (
            blocksize is None or dense.shape[0] % blocksize[0] or dense.shape[1] % blocksize[1]
        ):
            raise ConfigError(
                f"SparseLinear bsr: blocksize {blocksize} does not tile the weight "
                f"{tuple(dense.shape)}"
            )
        with warnings.catch_warnings():  # torch calls its sparse layouts "beta" on every use
            warnings.filterwarnings("ignore", "Sparse (CSR|BSR) tensor support is in beta")
            if layout == "csr":
                sparse = dense.to_sparse_csr()
            else:
                assert blocksize is not None
                sparse = dense.to_sparse_bsr(blocksize)
        self.layout, self.blocksize = layout, blocksize
        self.in_features, self.out_features = dense.shape[1], dense.shape[0]
        self.register_buffer("weight", sparse)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.in_features).T
        if self.bias is None:
            out = self.weight @ flat
        else:
            out = torch.addmm(self.bias.unsqueeze(1), self.weight, flat)
        return out.T.reshape(*x.shape[:-1], self.out_features)

    def to_linear(self) -> nn.Linear:
        """The equivalent dense ``nn.Linear``."""
        layer = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        layer = layer.to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(self.weight.to_dense())
            if self.bias is not None:
                layer.bias.copy_(self.bias)
        return layer

    def extra_repr(self) -> str:
        block = f", blocksize={self.blocksize}" if self.layout == "bsr" else ""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"layout={self.layout}{block}, nnz={self.weight.values().numel()}"
        )


class SemiStructuredLinear(nn.Module):
    """``y = x W^T + b`` with a 2:4-sparse ``W`` compressed by
    :func:`torch.sparse.to_sparse_semi_structured` (CUDA sparse tensor cores; half, bfloat16,
    float32 or int8 weights whose shape the kernels accept)."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        if not weight.is_cuda:
            raise ConfigError("2:4 semi-structured kernels need a CUDA weight; this one is on CPU")
        if not is_two_of_four(weight):
            raise ConfigError("SemiStructuredLinear needs a 2:4 weight (<= 2 nonzeros in every 4)")
        compressed = torch.sparse.to_sparse_semi_structured(weight.detach())
        self.weight = nn.Parameter(compressed, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), False)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, pattern=2:4"
