"""Recipes: a whole pruning job in one YAML file, validated before anything runs.

Every name is checked against its registry (model, data set, estimator, granularity), every option
against the signature it is passed to, and every number against its range; a bad field is reported
with its path in the file (e.g. ``prune.sparsity``). ``granularity: layer`` (whole residual blocks,
:func:`prunekit.surgery.layers.prune_layers`) takes the block estimators (``angular``, ``oracle``)
or any registry estimator lifted to blocks, and always prunes by surgery.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from prunekit.core.selection import SelectionConfig
from prunekit.errors import ConfigError, PrunekitError, closest

if TYPE_CHECKING:
    from prunekit.estimators import Estimator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _registry_check(value: str, check: Any) -> str:
    try:
        check(value)
    except PrunekitError as err:
        raise ValueError(str(err)) from err
    return value


class ModelSpec(_Strict):
    """A reference model by registry name, optionally loaded from a prunekit save directory."""

    name: str = "lenet-300-100"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    checkpoint: Path | None = None

    @model_validator(mode="after")
    def _known(self) -> ModelSpec:
        from prunekit.models import MODELS, model_args

        _registry_check(self.name, MODELS.get)
        unknown = sorted(set(self.kwargs) - set(model_args(self.name)))
        if unknown:
            raise ValueError(
                f"model {self.name!r} has no argument {unknown[0]!r}; "
                f"arguments: {sorted(model_args(self.name))}"
            )
        return self


class DataSpec(_Strict):
    """A registered data set; ``train_limit`` / ``test_limit`` take the first N samples."""

    dataset: str = "mnist"
    root: Path | None = None
    batch_size: int = Field(128, ge=1)
    train_limit: int | None = Field(None, ge=1)
    test_limit: int | None = Field(None, ge=1)

    @field_validator("dataset")
    @classmethod
    def _known(cls, value: str) -> str:
        from prunekit.data import DATASETS

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


def _is_layer(granularity: str) -> bool:
    from prunekit.surgery.layers import is_layer_granularity

    return is_layer_granularity(granularity)


def _is_block_estimator(name: str) -> bool:
    from prunekit.estimators.blocks import BLOCK_ESTIMATORS

    return name in BLOCK_ESTIMATORS


class EstimatorSpec(_Strict):
    """An estimator by registry name with its constructor options. A block estimator name
    (``angular``, ``oracle``) is checked with the granularity, in :class:`PruneSpec`."""

    name: str = "magnitude"
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _buildable(self) -> EstimatorSpec:
        from prunekit.estimators import ESTIMATORS, get_estimator
        from prunekit.estimators.blocks import BLOCK_ESTIMATORS

        if _is_block_estimator(self.name):
            return self
        if self.name not in ESTIMATORS:
            known = sorted({*ESTIMATORS.names(), *BLOCK_ESTIMATORS.names()})
            raise ValueError(
                f"unknown estimator {self.name!r}{closest(self.name.lower(), known)}; known: "
                f"{', '.join(known)} ({', '.join(BLOCK_ESTIMATORS.names())} score whole blocks "
                "at granularity 'layer')"
            )
        _registry_check(self.name, lambda n: get_estimator(n, **self.options))
        return self

    def build(self, granularity: str) -> Estimator:
        """The estimator for ``granularity``: lifted to whole blocks at layer granularity."""
        from prunekit.estimators import ESTIMATORS, get_estimator
        from prunekit.estimators.blocks import block_estimator

        if _is_layer(granularity):
            return block_estimator(self.name, **self.options)
        if self.name not in ESTIMATORS and _is_block_estimator(self.name):
            raise ConfigError(
                f"estimator {self.name!r} scores whole residual blocks; it needs granularity "
                f"'layer', not {granularity!r}"
            )
        return get_estimator(self.name, **self.options)


class PruneSpec(_Strict):
    """What to prune and how: the arguments of :func:`prunekit.prune`."""

    estimator: EstimatorSpec = Field(default_factory=EstimatorSpec)
    granularity: str = "element"
    sparsity: float | None = None
    threshold: float | None = None
    scope: Literal["global", "layer"] = "global"
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    overrides: dict[str, float] = Field(default_factory=dict)
    min_keep: int = Field(1, ge=0)
    round_to: int = Field(1, ge=1)
    normalize: Literal["none", "max", "sum", "l2", "mean"] = "none"
    calibration_batches: int = Field(8, ge=1)
    surgery: bool | None = Field(
        None,
        description="remove units physically (verified); None: yes for structural granularities "
        "(always for layer)",
    )
    verify: bool = True

    @field_validator("granularity")
    @classmethod
    def _granularity(cls, value: str) -> str:
        from prunekit.granularity import get_granularity

        if _is_layer(value):
            return "layer"
        return _registry_check(value, get_granularity)

    @model_validator(mode="after")
    def _selection(self) -> PruneSpec:
        try:
            self.selection_config()
            self.estimator.build(self.granularity)
        except ConfigError as err:
            raise ValueError(str(err)) from err
        if _is_layer(self.granularity):
            return self._layer_options()
        from prunekit.granularity import get_granularity

        if (
            get_granularity(self.granularity).pattern is None
            and self.sparsity is None
            and (self.threshold is None)
        ):
            raise ValueError("give sparsity or threshold (or an N:M granularity such as '2:4')")
        if self.surgery and not get_granularity(self.granularity).structural:
            raise ValueError(
                f"surgery removes whole units; granularity {self.granularity!r} is not "
                "structural (use 'channel', or surgery: false)"
            )
        return self

    def _layer_options(self) -> PruneSpec:
        """Layer granularity: a block is one unit, ranked globally and removed by surgery."""
        if self.sparsity is None and self.threshold is None:
            raise ValueError(
                "granularity 'layer': give sparsity (the fraction of candidate blocks removed) "
                "or threshold"
            )
        if self.surgery is False:
            raise ValueError(
                "granularity 'layer' removes whole residual blocks by surgery; it cannot mask "
                "(leave surgery unset or true)"
            )
        defaults = {"scope": "global", "round_to": 1, "normalize": "none", "min_keep": 1}
        meaningless = [
            f"{k}: {getattr(self, k)!r}" for k, v in defaults.items() if getattr(self, k) != v
        ]
        if meaningless:
            raise ValueError(
                "granularity 'layer' ranks whole blocks globally, one unit each; remove what has "
                f"no meaning there: {', '.join(meaningless)}"
            )
        return self

    @property
    def uses_surgery(self) -> bool:
        """Whether pruning is physical: ``surgery``, or by default a structural granularity
        (always at layer granularity)."""
        from prunekit.granularity import get_granularity

        if _is_layer(self.granularity):
            return True
        if self.surgery is not None:
            return self.surgery
        return get_granularity(self.granularity).structural

    def selection_config(self) -> SelectionConfig:
        return SelectionConfig(
            sparsity=self.sparsity,
            threshold=self.threshold,
            scope=self.scope,
            overrides=self.overrides,
            min_keep=self.min_keep,
            round_to=self.round_to,
            normalize=self.normalize,
        )


class OutputSpec(_Strict):
    """Where results go. ``curve`` lists estimators for an extra one-shot accuracy-vs-sparsity
    plot at ``curve_sparsities`` (no fine-tuning), drawn from the dense model."""

    dir: Path = Path("runs/prunekit")
    save: bool = True
    plots: bool = True
    curve: list[str] = Field(default_factory=list)
    curve_sparsities: list[float] = Field(default_factory=lambda: [0.5, 0.7, 0.8, 0.9, 0.95, 0.98])

    @field_validator("curve")
    @classmethod
    def _estimators(cls, value: list[str]) -> list[str]:
        from prunekit.estimators import ESTIMATORS

        return [v if _is_block_estimator(v) else _registry_check(v, ESTIMATORS.get) for v in value]

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
    prune: PruneSpec
    finetune: FinetuneSpec = Field(default_factory=lambda: FinetuneSpec(epochs=0))
    output: OutputSpec = Field(default_factory=OutputSpec)
    seed: int = 0
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads for the job; None keeps torch's default"
    )

    @model_validator(mode="after")
    def _curve_estimators(self) -> Recipe:
        for name in self.output.curve:
            try:
                EstimatorSpec(name=name).build(self.prune.granularity)
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
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"{source}: invalid recipe: {problems}") from None


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
