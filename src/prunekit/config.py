"""One validated configuration for a pruning job: :class:`PruneConfig`.

Every option of :func:`prunekit.prune` is a field here, defined once with its default and its help
text. The Python API (``prunekit.prune(model, sparsity=0.5)`` or ``config=PruneConfig(...)``), the
``prune:`` section of a YAML recipe and the ``prunekit prune`` command line all build this one
object, so an option means the same everywhere and is checked the same way before anything runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from prunekit.budget.target import parse_target
from prunekit.core.scores import NORMALIZATIONS, Normalization
from prunekit.core.selection import SelectionConfig
from prunekit.errors import (
    ConfigError,
    UnknownNameError,
    check_sparsity,
    closest,
)
from prunekit.validation import as_value_error, describe_errors, error_class

if TYPE_CHECKING:
    from prunekit.estimators import Estimator

LAYER_GRANULARITY = "layer"
"""The granularity whose units are whole residual blocks."""


def _target_dict(value: Any) -> dict[str, float | str] | None:
    """A budget as plain data, ``{"macs": 0.5}`` or ``{"latency": 0.5, "runtime": "torch"}``,
    from anything :func:`prunekit.budget.parse_target` reads."""
    if value is None:
        return None
    return as_value_error(parse_target, value).as_dict()


_LAYER_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "scope": ("auto", "global"),
    "round_to": (1,),
    "normalize": ("auto", "none"),
    "min_keep": (0, 1),
}
"""Selection options that mean nothing when a unit is a whole block, and their neutral values."""


class PruneConfig(BaseModel):
    """What to prune and how; the options of :func:`prunekit.prune`, a recipe's ``prune:``
    section and ``prunekit prune``. Frozen: derive a changed copy with :meth:`replace`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    granularity: str = Field(
        "element",
        description="What a unit is: element, 2:4, block:4x4, channel, layer (whole residual "
        "blocks); prunekit list shows every granularity.",
    )
    estimator: str = Field(
        "magnitude", description="Importance estimator by registry name (prunekit list)."
    )
    estimator_options: dict[str, Any] = Field(
        default_factory=dict, description="Options for the estimator's constructor."
    )
    sparsity: float | None = Field(
        None, description="Fraction of units removed, in [0, 1). Exclusive with threshold."
    )
    threshold: float | None = Field(
        None, description="Remove every unit whose (normalised) score is below this."
    )
    target: dict[str, float | str] | None = Field(
        None,
        description="Budget as the fraction of the dense model kept, e.g. macs=0.5, "
        "params=0.3, size=0.25 (bytes of the saved weights) or latency=0.5 (measured; "
        "runtime=onnxruntime, openvino or torch); structural pruning finds the sparsity that "
        "meets it.",
    )
    scope: Literal["auto", "global", "layer"] = Field(
        "auto",
        description="global: rank every group's units on one scale; layer: the same "
        "fraction from each group; auto: layer for structural units, global otherwise.",
    )
    normalize: Literal["auto", "none", "max", "sum", "l2", "mean"] = Field(
        "auto",
        description="Per-group score normalisation before a global ranking; auto: mean for "
        "structural units ranked globally, none otherwise.",
    )
    min_keep: int = Field(1, ge=0, description="Every group keeps at least this many units.")
    min_keep_fraction: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Every structural group keeps at least this fraction of its units, so no "
        "layer collapses.",
    )
    round_to: int | Literal["auto"] = Field(
        1,
        description="Kept units per group are rounded up to a multiple of this; auto: the "
        "width step the target runtime runs fastest, measured on the model.",
    )
    include: tuple[str, ...] = Field(
        ("*",), description="Layer-name glob patterns to prune (default: every layer)."
    )
    exclude: tuple[str, ...] = Field(
        (), description="Layer-name glob patterns to leave alone (outputs keep their width)."
    )
    overrides: dict[str, float] = Field(
        default_factory=dict, description="Layer-name glob pattern -> its own sparsity."
    )
    n_batches: int | None = Field(
        8,
        ge=1,
        validation_alias=AliasChoices("n_batches", "calibration_batches"),
        description="Batches of data used for scoring and BatchNorm recalibration.",
    )
    surgery: bool | None = Field(
        None,
        description="Remove units physically (verified) instead of masking; default: yes for "
        "structural granularities given example inputs, always for layer.",
    )
    verify: bool = Field(
        True, description="Check that surgery computes what masking computes (cheap)."
    )
    verify_exhaustive: bool = Field(
        False, description="Verify in float64 on copies of both models (slow, exhaustive)."
    )
    atol: float | None = Field(
        None,
        gt=0.0,
        description="Verification tolerance, relative to the largest output; default 1e-4 in "
        "the model's dtype, 1e-5 for the exhaustive float64 check.",
    )
    metrics: bool = Field(True, description="Measure params, MACs and size before and after.")
    latency: bool = Field(False, description="Also time the model before and after (slow).")
    heads: bool = Field(True, description="Let whole heads of nn.MultiheadAttention be removed.")
    recalibrate: bool = Field(
        True, description="Re-estimate BatchNorm statistics on the data after surgery."
    )

    @model_validator(mode="before")
    @classmethod
    def _estimator_mapping(cls, data: Any) -> Any:
        """A recipe may write ``estimator: {name: taylor, options: {...}}``; an unknown field
        is refused with a did-you-mean."""
        if isinstance(data, Mapping):
            for key in data:
                if key not in cls.model_fields and key != "calibration_batches":
                    raise ValueError(f"unknown option {key!r}{closest(str(key), cls.model_fields)}")
        if isinstance(data, Mapping) and isinstance(data.get("estimator"), Mapping):
            data = dict(data)
            spec = dict(data.pop("estimator"))
            unknown = sorted(set(spec) - {"name", "options"})
            if unknown:
                raise ValueError(f"estimator has no field {unknown[0]!r} (name, options)")
            data["estimator"] = spec.get("name", "magnitude")
            if "options" in spec:
                data["estimator_options"] = spec["options"] or {}
        return data

    @field_validator("granularity")
    @classmethod
    def _granularity(cls, value: str) -> str:
        from prunekit.granularity import get_granularity

        text = value.strip().lower()
        if text == LAYER_GRANULARITY:
            return text
        return as_value_error(lambda v: get_granularity(v).spec(), value)

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _patterns(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            raise ValueError(
                f"{info.field_name} takes a list of layer-name patterns, got the string {value!r} "
                f"(write [{value!r}])"
            )
        return tuple(value) if isinstance(value, list) else value

    @field_validator("sparsity")
    @classmethod
    def _sparsity(cls, value: float | None) -> float | None:
        return None if value is None else as_value_error(check_sparsity, value)

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"threshold must be a finite number, got {value!r}")
        return value

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, value: Any) -> dict[str, float | str] | None:
        return _target_dict(value)

    @field_validator("round_to")
    @classmethod
    def _round_to(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"round_to must be an integer >= 1 or 'auto', got {value}")
        return value

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, value: dict[str, float]) -> dict[str, float]:
        return {k: as_value_error(lambda v, k=k: check_sparsity(v, f"overrides[{k!r}]"), v)
                for k, v in value.items()}  # fmt: skip

    @field_validator("normalize")
    @classmethod
    def _normalize(cls, value: str) -> str:
        if value != "auto" and value not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> PruneConfig:
        given = [n for n in ("sparsity", "threshold", "target") if getattr(self, n) is not None]
        if len(given) > 1:
            both = " and ".join(given)
            raise ValueError(f"give one of sparsity, threshold or target, not {both}")
        if not (info.context or {}).get("estimator_instance"):
            self._check_estimator()
        if self.is_layer:
            return self._check_layer()
        from prunekit.granularity import get_granularity

        gran = get_granularity(self.granularity)
        if gran.pattern is None and not given and not self.overrides:
            raise ValueError(
                "pruning needs sparsity, threshold or target (or an N:M granularity such as '2:4')"
            )
        if self.surgery and not gran.structural:
            raise ValueError(
                f"surgery removes whole units; granularity {self.granularity!r} is not "
                "structural (use 'channel', or masks for element, N:M and block)"
            )
        if self.target is not None and (self.surgery is False or not gran.structural):
            raise ValueError(
                "a MACs, params or latency target needs structural pruning (granularity "
                "'channel' with example inputs); masks keep every dense MAC"
            )
        return self

    def _check_estimator(self) -> None:
        from prunekit.estimators import ESTIMATORS

        name = self.estimator
        if name not in ESTIMATORS:
            known = sorted(ESTIMATORS.names())
            message = (
                f"unknown estimator {name!r}{closest(name.lower(), known)}; known: "
                f"{', '.join(known)}"
            )
            raise ValueError(message) from UnknownNameError(message)
        as_value_error(lambda _: self.build_estimator(), name)

    def _check_layer(self) -> PruneConfig:
        """Layer granularity: a block is one unit, ranked globally and removed by surgery."""
        if self.sparsity is None and self.threshold is None and not self.overrides:
            raise ValueError(
                "granularity 'layer' needs sparsity (the fraction of candidate blocks removed) "
                "or threshold"
            )
        if self.surgery is False:
            raise ValueError(
                "granularity 'layer' removes whole residual blocks by surgery; it cannot mask"
            )
        meaningless = [
            f"{name}: {getattr(self, name)!r}"
            for name, fine in _LAYER_NEUTRAL.items()
            if getattr(self, name) not in fine
        ]
        if meaningless:
            raise ValueError(
                "granularity 'layer' ranks whole blocks globally, one unit each; remove what has "
                f"no meaning there: {', '.join(meaningless)}"
            )
        return self

    @property
    def is_layer(self) -> bool:
        """Whether units are whole residual blocks."""
        return self.granularity == LAYER_GRANULARITY

    @property
    def resolved_scope(self) -> Literal["global", "layer"]:
        """The scope ``auto`` stands for: per-layer for structural units (channels, heads),
        where a global ranking of raw scores starves whole layers, global otherwise (weights,
        N:M, tiles, blocks)."""
        if self.scope != "auto":
            return self.scope
        from prunekit.granularity import get_granularity

        if self.is_layer or not get_granularity(self.granularity).structural:
            return "global"
        return "layer"

    def build_estimator(self) -> Estimator:
        """The configured estimator, built with its options; at granularity ``layer`` a block
        estimator (``angular``, ``oracle``) or a unit estimator lifted to whole blocks."""
        from prunekit.estimators import block_estimator, capabilities_of, get_estimator

        if self.is_layer:
            return block_estimator(self.estimator, **self.estimator_options)
        if capabilities_of(self.estimator) == {"blocks"}:
            raise ConfigError(
                f"estimator {self.estimator!r} scores whole residual blocks; it needs "
                f"granularity 'layer', not {self.granularity!r}"
            )
        return get_estimator(self.estimator, **self.estimator_options)

    @property
    def resolved_normalize(self) -> Normalization:
        """The normalisation ``auto`` stands for: ``mean`` when structural units are ranked
        globally (raw scores differ in scale from layer to layer, and a global ranking of them
        starves whole layers: see the selection benchmark in docs/benchmarks.md), else none."""
        if self.normalize != "auto":
            return self.normalize
        from prunekit.granularity import get_granularity

        structural = not self.is_layer and get_granularity(self.granularity).structural
        return "mean" if structural and self.resolved_scope == "global" else "none"

    def replace(self, **changes: Any) -> PruneConfig:
        """A validated copy with ``changes`` applied."""
        return make_config(self, changes, where="")

    def selection(self, round_to: int | None = None) -> SelectionConfig:
        """The selection stage's part of this configuration; ``round_to`` replaces the
        configured step (how ``"auto"`` is resolved once measured; unresolved it is 1)."""
        if round_to is None:
            round_to = self.round_to if isinstance(self.round_to, int) else 1
        return SelectionConfig(
            sparsity=self.sparsity,
            threshold=self.threshold,
            scope=self.resolved_scope,
            overrides=dict(self.overrides),
            min_keep=self.min_keep,
            min_keep_fraction=0.0 if self.is_layer else self.min_keep_fraction,
            round_to=round_to,
            normalize=self.resolved_normalize,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (what a recipe's ``prune:`` section holds)."""
        return self.model_dump(mode="json")

    @classmethod
    def help(cls, name: str) -> str:
        """The help text of option ``name``."""
        return cls.model_fields[name].description or ""

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of option ``name``."""
        return cls.model_fields[name].get_default(call_default_factory=True)


def make_config(
    base: PruneConfig | Mapping[str, Any] | None = None,
    changes: Mapping[str, Any] | None = None,
    *,
    where: str = "prune()",
    estimator_instance: bool = False,
) -> PruneConfig:
    """``base`` (a config, a mapping of options or the defaults) with ``changes`` applied and
    validated; an unknown option or a bad value is a :class:`ConfigError` naming it.
    ``estimator_instance``: the estimator is a user's instance, not a registry name."""
    data: dict[str, Any] = {}
    if isinstance(base, PruneConfig):
        data = base.model_dump(exclude_unset=True)
    elif base is not None:
        data = dict(base)
    changes = dict(changes or {})
    fields = set(PruneConfig.model_fields) | {"calibration_batches"}
    for name in changes:
        if name not in fields:
            raise ConfigError(
                f"{where or 'config'} got an unknown option {name!r}"
                f"{closest(name, PruneConfig.model_fields)}"
            )
    data.update(changes)
    if "calibration_batches" in data and "n_batches" in data:
        data.pop("calibration_batches")
    try:
        context = {"estimator_instance": estimator_instance}
        return PruneConfig.model_validate(data, context=context)
    except ValidationError as err:
        message = describe_errors(err)
        raise error_class(err)(f"{where}: {message}" if where else message) from None
