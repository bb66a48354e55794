"""Make torchvision's pure-Python models importable next to a CPU-only torch.

torchvision 0.28.0 on PyPI ships compiled ops built for CUDA that cannot load next to the CPU
torch 2.13.0 build; its model definitions need none of them, but ``import torchvision`` registers
fake kernels for ``torchvision::nms`` and ``torchvision::qnms``, which fails unless the two
operator schemas exist. :func:`ensure_torchvision_ops` defines them through ``torch.library``
(schemas only, no kernels) and must run before ``import torchvision``.
"""

from __future__ import annotations

import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARY: list[torch.library.Library] = []


def ensure_torchvision_ops() -> None:
    """Define the ``torchvision::nms`` / ``qnms`` schemas if nothing has defined them yet."""
    missing = [name for name in _SCHEMAS if not _defined(name)]
    if not missing:
        return
    library = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        library.define(_SCHEMAS[name])
    _LIBRARY.append(library)  # the definitions live as long as the library object


def _defined(name: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
    except RuntimeError:
        return False
    return True
