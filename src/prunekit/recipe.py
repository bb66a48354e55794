"""Recipes: a whole pruning job in one YAML file, validated before anything runs.

Every name is checked against its registry (model, data set, estimator, granularity), every option
against the signature it is passed to, and every number against its range; a bad field is reported
with its path in the file (e.g. ``prune.sparsity``). The ``prune:`` section is a
:class:`~prunekit.config.PruneConfig`, the same object ``prunekit.prune`` and the command line
build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from prunekit.config import PruneConfig
from prunekit.errors import ConfigError, PrunekitError, closest
from prunekit.export.recipe_section import ExportSection
from prunekit.validation import as_value_error, describe_errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _registry_check(value: str, check: Any) -> str:
    """``value`` once ``check(value)`` accepts it (a registry lookup, a spec parser)."""
    as_value_error(check, value)
    return value


class ModelSpec(_Strict):
    """The model: a reference model by registry name or a model spec (``torchvision:resnet18``,
    ``timm:NAME``, ``hf:DIR``, ``file.py:factory``, ``package.module:factory``), with
    ``weights`` (safetensors, a Hugging Face directory or a state dict) or a prunekit save
    directory as ``checkpoint``."""

    name: str = "lenet-300-100"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: Path | None = None
    checkpoint: Path | None = None

    @property
    def is_source(self) -> bool:
        """Whether ``name`` is a model spec rather than a reference model's name."""
        return ":" in self.name

    @model_validator(mode="after")
    def _known(self) -> ModelSpec:
        from prunekit.models import MODELS, model_args
        from prunekit.sources import parse_model_spec

        if self.is_source:
            _registry_check(self.name, parse_model_spec)
            return self
        if self.weights is not None:
            raise ValueError("weights= is for model specs; a reference model loads checkpoint=")
        _registry_check(self.name, MODELS.get)
        unknown = sorted(set(self.kwargs) - set(model_args(self.name)))
        if unknown:
            raise ValueError(
                f"model {self.name!r} has no argument {unknown[0]!r}; "
                f"arguments: {sorted(model_args(self.name))}"
            )
        return self


class DataSpec(_Strict):
    """A registered data set (``mnist``, ``fashion-mnist``, ``digits``) or a data spec
    (``imagefolder:DIR``, ``npz:FILE``, ``text:FILE``); ``train_limit`` / ``test_limit`` take
    the first N samples."""

    dataset: str = "mnist"
    root: Path | None = None
    batch_size: int = Field(128, ge=1)
    train_limit: int | None = Field(None, ge=1)
    test_limit: int | None = Field(None, ge=1)

    @field_validator("dataset")
    @classmethod
    def _known(cls, value: str) -> str:
        from prunekit.data import DATASETS
        from prunekit.sources import DATA_FAMILIES

        if ":" in value:
            prefix = value.partition(":")[0].lower()
            if prefix not in DATA_FAMILIES or prefix in DATASETS:
                known = [k for k in DATA_FAMILIES if k not in DATASETS]
                raise ValueError(
                    f"unknown data spec prefix {prefix!r}{closest(prefix, known)}; known: "
                    f"{', '.join(f'{k}:' for k in known)}"
                )
            return value
        return _registry_check(value, DATASETS.get)


class TrainSpec(_Strict):
    """Training of the dense model (when no checkpoint is given) or fine-tuning after pruning."""

    epochs: int = Field(1, ge=0)
    max_steps: int | None = Field(None, ge=1)
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = Field(0.0, ge=0)


class DistillSpec(_Strict):
    """Distillation from the unpruned model while fine-tuning (Hinton et al. 2015): ``alpha``
    weighs the KL term on logits softened by ``temperature`` against the label loss."""

    alpha: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(2.0, gt=0)


class FinetuneSpec(TrainSpec):
    """Fine-tuning after pruning: :class:`TrainSpec`, plus ``distill`` to learn from the
    unpruned model's logits instead of the labels alone."""

    distill: DistillSpec | None = None

    @model_validator(mode="after")
    def _distill_needs_training(self) -> FinetuneSpec:
        if self.distill is not None and self.epochs == 0 and self.max_steps is None:
            raise ValueError("distill needs fine-tuning: set finetune.epochs or max_steps")
        return self


class OutputSpec(_Strict):
    """Where results go. ``curve`` lists estimators for an extra one-shot accuracy-vs-sparsity
    plot at ``curve_sparsities`` (no fine-tuning), drawn from the dense model."""

    dir: Path = Path("runs/prunekit")
    save: bool = True
    plots: bool = True
    report: bool = Field(True, description="Write a self-contained HTML report of the run.")
    latency: bool = Field(True, description="Time the dense and the pruned model on the CPU.")
    latency_batch: int = Field(
        1, ge=1, description="Batch size of the latency measurement (the example repeated)."
    )
    latency_runtimes: list[str] = Field(
        default_factory=list,
        description="Runtimes (onnxruntime, openvino, torch) the report times both models in.",
    )
    curve: list[str] = Field(default_factory=list)
    curve_sparsities: list[float] = Field(default_factory=lambda: [0.5, 0.7, 0.8, 0.9, 0.95, 0.98])

    @field_validator("latency_runtimes")
    @classmethod
    def _runtimes(cls, value: list[str]) -> list[str]:
        from prunekit.measure.runtimes import check_runtime

        return [_registry_check(v, check_runtime) for v in value]

    @field_validator("curve")
    @classmethod
    def _estimators(cls, value: list[str]) -> list[str]:
        from prunekit.estimators import BLOCK_ESTIMATORS, ESTIMATORS

        return [v if v in BLOCK_ESTIMATORS else _registry_check(v, ESTIMATORS.get) for v in value]

    @field_validator("curve_sparsities")
    @classmethod
    def _sparsities(cls, value: list[float]) -> list[float]:
        from prunekit.errors import check_sparsity

        try:
            return [check_sparsity(v, "curve_sparsities") for v in value]
        except ConfigError as err:
            raise ValueError(str(err)) from err


class Recipe(_Strict):
    """A pruning job: model, data, dense training, pruning, fine-tuning, outputs."""

    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    prune: PruneConfig
    finetune: FinetuneSpec = Field(default_factory=lambda: FinetuneSpec(epochs=0))
    output: OutputSpec = Field(default_factory=OutputSpec)
    export: ExportSection | None = Field(
        None, description="Export the pruned model (format, dynamic_batch, int8, calibration)."
    )
    seed: int = 0
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads for the job; None keeps torch's default"
    )

    example_shape: list[int] | None = Field(
        None,
        description="Shape of the example input that tracing and measurement run on (batch "
        "first, e.g. [1, 3, 224, 224]); default: one sample of the data.",
    )

    @field_validator("example_shape", mode="before")
    @classmethod
    def _shape(cls, value: Any) -> Any:
        from prunekit.sources import parse_shape

        if value is None:
            return None
        try:
            return list(parse_shape(value))
        except PrunekitError as err:
            raise ValueError(str(err)) from err

    @model_validator(mode="after")
    def _curve_estimators(self) -> Recipe:
        for name in self.output.curve:
            try:
                self.prune.replace(estimator=name, estimator_options={})
            except ConfigError as err:
                raise ValueError(f"output.curve: {err}") from err
        return self


def parse_recipe(data: Any, source: str = "<recipe>") -> Recipe:
    """Validate a recipe given as a dict; errors name the source and each bad field's path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a recipe must be a mapping, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid recipe: {describe_errors(err)}") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a YAML recipe."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"recipe file {str(path)!r} does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_recipe(data, str(path))
