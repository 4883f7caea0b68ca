"""What one training run is asked for: the trainer's hyperparameters and the names of its options.

Kept apart from :mod:`boostmdr.trainer` so that reading them needs neither torch nor transformers: the command
line (``python -m boostmdr.train --help``) and anything that only checks settings start in a fraction of a second.
:mod:`boostmdr.loss` takes its score functions and weightings from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SIMILARITIES: tuple[str, ...] = ("cos", "dot")
"""Score functions of :func:`boostmdr.loss.similarity_scores`."""
LOSS_WEIGHTINGS: tuple[str, ...] = ("paper", "authors", "softmax")
"""How hard-negative weights enter the loss (:func:`boostmdr.loss.hard_negative_weighting`)."""
COS_TEMPERATURE = 0.05  # = sentence-transformers' MNRL scale 20, the usual value for cosine scores
DOT_TEMPERATURE = 1.0  # Tevatron's default: raw inner products (mDPR-style CLS, not normalised)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters; everything except ``save_steps`` and the precision/memory switches decides the
    result and enters the resume fingerprint. Defaults follow the paper (App. B.1) where it says, and the
    authors' code (HF Trainer defaults: no warmup, no weight decay, clip at 1.0) where it does not."""

    epochs: int = 16
    batch_size: int = 24
    group_size: int = 8
    lr: float = 3e-6
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    temperature: float = 0.05
    similarity: str = "cos"
    loss_weighting: str = "paper"
    seed: int = 42
    max_steps: int | None = None
    save_steps: int = 500
    length_buckets: int = 1
    fp16: bool = False
    bf16: bool = False
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "--epochs must be >= 1"),
            (self.batch_size >= 1, "--batch-size must be >= 1"),
            (self.group_size >= 2, "--group-size must be >= 2 (one positive and at least one negative)"),
            (self.lr > 0, "--lr must be > 0"),
            (0.0 <= self.warmup_ratio < 1.0, "--warmup-ratio must be in [0, 1)"),
            (self.weight_decay >= 0, "--weight-decay must be >= 0"),
            (self.max_grad_norm >= 0, "--max-grad-norm must be >= 0 (0 disables clipping)"),
            (self.temperature > 0, "--temperature must be > 0"),
            (self.similarity in SIMILARITIES, f"--similarity must be one of {SIMILARITIES}"),
            (self.loss_weighting in LOSS_WEIGHTINGS, f"--loss-weighting must be one of {LOSS_WEIGHTINGS}"),
            (self.max_steps is None or self.max_steps >= 1, "--max-steps must be >= 1"),
            (self.save_steps >= 0, "--save-steps must be >= 0 (0: only the final output)"),
            (not (self.fp16 and self.bf16), "--fp16 and --bf16 exclude each other"),
            (self.length_buckets >= 1, "--length-buckets must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def result_fields(self) -> dict[str, Any]:
        skip = {"save_steps", "fp16", "bf16", "gradient_checkpointing"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
