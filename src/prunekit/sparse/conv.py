"""2-D convolutions computed as a sparse matrix product: :class:`SparseConv2d`.

A convolution is a matrix product of its weight, viewed as ``(out_channels, in_channels * kh *
kw)``, with the input's patches (``im2col``, :func:`torch.nn.functional.unfold`), one column per
output position (Chellapilla et al. 2006). With the weight held as a CSR / block-CSR tensor the
product skips the zeros. A 1x1 convolution with stride 1 and no padding needs no patches at all:
the input itself, channels by positions, is the right-hand side; for larger kernels the patch
matrix costs ``kh * kw`` times the input, which is why :func:`~prunekit.sparse.sparsify` only
keeps such a replacement where it measured faster.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prunekit.errors import ConfigError

_Pair = tuple[int, int]


def conv_unsupported(module: nn.Conv2d) -> str:
    """Why ``module`` cannot become a :class:`SparseConv2d` ("" when it can)."""
    if module.groups != 1:
        return f"grouped convolution (groups={module.groups}): no sparse kernel"
    if isinstance(module.padding, str):
        return f"padding={module.padding!r}: only numeric padding is supported"
    if module.padding_mode != "zeros":
        return f"padding_mode={module.padding_mode!r}: only zero padding is supported"
    return ""


def _pair(value: int | tuple[int, ...]) -> _Pair:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


class SparseConv2d(nn.Module):
    """The ``nn.Conv2d`` ``conv`` (``groups=1``, numeric zero padding) with its weight held as a
    torch sparse CSR (``layout="csr"``) or BSR tensor of shape ``(out, in * kh * kw)``."""

    weight: Tensor
    bias: Tensor | None

    def __init__(
        self, conv: nn.Conv2d, layout: str = "csr", blocksize: _Pair | None = None
    ) -> None:
        super().__init__()
        problem = conv_unsupported(conv)
        if problem:
            raise ConfigError(f"SparseConv2d: {problem}")
        dense = conv.weight.detach()
        self.out_channels, self.in_channels = dense.shape[0], dense.shape[1]
        self.kernel_size = _pair(conv.kernel_size)
        self.stride, self.dilation = _pair(conv.stride), _pair(conv.dilation)
        self.padding = _pair(conv.padding)  # type: ignore[arg-type]
        matrix = dense.reshape(self.out_channels, -1)
        with warnings.catch_warnings():  # torch calls its sparse layouts "beta" on every use
            warnings.filterwarnings("ignore", "Sparse (CSR|BSR) tensor support is in beta")
            if layout == "csr":
                sparse = matrix.to_sparse_csr()
            elif layout == "bsr" and blocksize is not None:
                sparse = matrix.to_sparse_bsr(blocksize)
            else:
                raise ConfigError(f"SparseConv2d: layout {layout!r} with blocksize {blocksize}")
        self.layout, self.blocksize = layout, blocksize
        self.register_buffer("weight", sparse)
        bias = conv.bias
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def _pointwise(self) -> bool:
        return self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        if self._pointwise():
            out_h, out_w = height, width
            columns = x.transpose(0, 1).reshape(self.in_channels, -1)
        else:
            patches = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
            kh, kw = self.kernel_size
            out_h = (height + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[
                0
            ] + 1
            out_w = (width + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[
                1
            ] + 1
            columns = patches.transpose(0, 1).reshape(patches.shape[1], -1)
        if self.bias is None:
            out = self.weight @ columns
        else:
            out = torch.addmm(self.bias.unsqueeze(1), self.weight, columns)
        return out.reshape(self.out_channels, batch, out_h, out_w).transpose(0, 1)

    def to_conv(self) -> nn.Conv2d:
        """The equivalent dense ``nn.Conv2d``."""
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            bias=self.bias is not None,
        ).to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.weight.to_dense().reshape(conv.weight.shape))
            if self.bias is not None and conv.bias is not None:
                conv.bias.copy_(self.bias)
        return conv

    def extra_repr(self) -> str:
        block = f", blocksize={self.blocksize}" if self.layout == "bsr" else ""
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, layout={self.layout}{block}, "
            f"nnz={self.weight.values().numel()}"
        )
