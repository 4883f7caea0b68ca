"""How a backbone's token states become a retrieval vector: :class:`EncoderSettings`, saved beside every
checkpoint as ``boostmdr_encoder.json``, and the command-line options that set them.

Kept apart from :mod:`boostmdr.encoder` (which needs torch) so that a step's ``--help`` and argument checks
do not import torch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SETTINGS_FILE = "boostmdr_encoder.json"
POOLING_MODES = ("cls", "mean")
Side = Literal["query", "passage"]


@dataclass(frozen=True)
class EncoderSettings:
    """How a backbone's token states become a retrieval vector. Checked when built.

    Attributes:
        pooling: ``"cls"`` (state of the first token) or ``"mean"`` (mean over non-padding tokens).
        normalize: L2-normalise the pooled vector (inner product then equals cosine similarity).
        query_prefix: text prepended to every query before tokenisation (e.g. ``"query: "`` for E5).
        passage_prefix: text prepended to every passage.
        q_max_len: maximum query length in tokens (special tokens included); longer queries are cut.
        p_max_len: maximum passage length in tokens.
    """

    pooling: str = "cls"
    normalize: bool = False
    query_prefix: str = ""
    passage_prefix: str = ""
    q_max_len: int = 64
    p_max_len: int = 256

    def __post_init__(self) -> None:
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"unknown encoder pooling {self.pooling!r}; valid choices are {', '.join(POOLING_MODES)}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"encoder setting 'normalize' must be true or false, got {self.normalize!r}")
        for name in ("query_prefix", "passage_prefix"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"encoder setting {name!r} must be a string, got {getattr(self, name)!r}")
        for name in ("q_max_len", "p_max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"encoder setting {name!r} must be an integer >= 2, got {value!r}")

    # -- serialisation

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "encoder settings") -> EncoderSettings:
        """Build from a mapping; unknown keys are an error (a typo must not be silently ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown encoder setting(s) {unknown}; valid keys are {sorted(known)}")
        return cls(**dict(data))

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``boostmdr_encoder.json`` into ``directory`` (atomically)."""
        from boostmdr.formats import write_json

        path = Path(directory) / SETTINGS_FILE
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> EncoderSettings:
        """Read ``boostmdr_encoder.json`` from ``directory``."""
        from boostmdr.formats import read_json

        path = Path(directory) / SETTINGS_FILE
        data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of encoder settings")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def saved_in(cls, directory: str | os.PathLike) -> EncoderSettings | None:
        """The settings saved in ``directory``, or ``None`` when it has no ``boostmdr_encoder.json``."""
        if (Path(directory) / SETTINGS_FILE).is_file():
            return cls.load(directory)
        return None

    def differences(self, other: EncoderSettings) -> dict[str, tuple[Any, Any]]:
        """``{field: (self_value, other_value)}`` for every field that differs."""
        return {
            f.name: (getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        }

    def max_len(self, side: Side) -> int:
        return self.q_max_len if side == "query" else self.p_max_len

    def prefix(self, side: Side) -> str:
        return self.query_prefix if side == "query" else self.passage_prefix


def resolve_settings(
    model_path: str | os.PathLike,
    settings: EncoderSettings | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> EncoderSettings:
    """The settings to encode ``model_path`` with.

    * If the model directory holds ``boostmdr_encoder.json``, those settings win; an explicit
      ``settings`` object, or any explicitly given ``overrides`` field, that disagrees with them is an
      error naming the differing fields (encoding must not disagree with training).
    * Otherwise ``settings`` is used, or ``EncoderSettings(**overrides)`` (unset fields take defaults;
      ``pooling`` must then be given, since there is no safe default for an arbitrary backbone).
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    known = {f.name for f in dataclasses.fields(EncoderSettings)}
    if set(overrides) - known:
        raise ValueError(f"unknown encoder setting(s) {sorted(set(overrides) - known)}; valid keys are {sorted(known)}")
    saved = EncoderSettings.saved_in(model_path) if Path(model_path).is_dir() else None
    if saved is not None:
        if settings is not None:
            diff = saved.differences(settings)
            if diff:
                raise ValueError(_mismatch_message(model_path, diff))
        diff = {k: (getattr(saved, k), v) for k, v in overrides.items() if getattr(saved, k) != v}
        if diff:
            raise ValueError(_mismatch_message(model_path, diff))
        return saved
    if settings is not None:
        if overrides:
            merged = EncoderSettings.from_dict({**settings.to_dict(), **overrides})
            diff = settings.differences(merged)
            if diff:
                raise ValueError(f"explicit encoder settings and overrides disagree on {sorted(diff)}")
        return settings
    if "pooling" not in overrides:
        raise ValueError(
            f"{model_path} has no {SETTINGS_FILE}; give the encoder settings explicitly "
            f"(at least the pooling: one of {', '.join(POOLING_MODES)}; CLI: --pooling)"
        )
    return EncoderSettings.from_dict(overrides)


def _mismatch_message(model_path: str | os.PathLike, diff: Mapping[str, tuple[Any, Any]]) -> str:
    parts = ", ".join(f"{k}: saved {a!r} vs given {b!r}" for k, (a, b) in sorted(diff.items()))
    return (
        f"encoder settings given for {model_path} disagree with its {SETTINGS_FILE} ({parts}); "
        "drop the explicit settings or make them match the checkpoint"
    )


# ------------------------------------------------------------------------------------ CLI helpers


def add_settings_arguments(parser: Any) -> None:
    """Add ``--pooling --normalize/--no-normalize --query-prefix --passage-prefix --q-max-len --p-max-len``.

    All default to ``None`` (= not given), so a checkpoint's saved settings are used unless overridden,
    and an override that disagrees with the checkpoint is an error.
    """
    import argparse

    group = parser.add_argument_group("encoder settings (default: the model's boostmdr_encoder.json)")
    group.add_argument("--pooling", choices=POOLING_MODES, default=None)
    group.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None)
    group.add_argument("--query-prefix", default=None)
    group.add_argument("--passage-prefix", default=None)
    group.add_argument("--q-max-len", type=int, default=None)
    group.add_argument("--p-max-len", type=int, default=None)


def settings_overrides(args: Any) -> dict[str, Any]:
    """The encoder settings given explicitly on the command line (see :func:`add_settings_arguments`)."""
    names = ("pooling", "normalize", "query_prefix", "passage_prefix", "q_max_len", "p_max_len")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
