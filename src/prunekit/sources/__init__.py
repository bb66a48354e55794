"""The user's own model and data, named by spec strings.

``load_model("torchvision:resnet50", weights="resnet50.safetensors")`` builds a model (prunekit
reference models, torchvision, timm, local Hugging Face directories, the user's own factories);
``load_data("imagefolder:photos/", model=source)`` reads data into train and held-out loaders.
Nothing is downloaded; every failure is a one-line :class:`SourceError`.
"""

from prunekit.sources.base import ModelSource, SourceError
from prunekit.sources.data import (
    DATA_FAMILIES,
    DataSource,
    data_families,
    example_from_shape,
    load_data,
    parse_shape,
)
from prunekit.sources.models import (
    MODEL_FAMILIES,
    load_model,
    model_families,
    parse_model_spec,
    rebuild_model,
)
from prunekit.sources.weights import check_fit, load_weights, read_state_dict

__all__ = [
    "DATA_FAMILIES",
    "MODEL_FAMILIES",
    "DataSource",
    "ModelSource",
    "SourceError",
    "check_fit",
    "data_families",
    "example_from_shape",
    "load_data",
    "load_model",
    "load_weights",
    "model_families",
    "parse_model_spec",
    "parse_shape",
    "read_state_dict",
    "rebuild_model",
]
