"""Command line of the trainer: ``python -m boostmdr.train`` (one process, or under ``torchrun``).

The options and their defaults come from :mod:`boostmdr.train_config`; the run itself is
:func:`boostmdr.trainer.train_from_args`, imported only once the arguments are parsed, so ``--help`` and a
mistyped option answer without importing torch or transformers. The trainer is described in
:mod:`boostmdr.trainer`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from boostmdr.encoder_settings import add_settings_arguments
from boostmdr.sampler import SAMPLERS
from boostmdr.train_config import COS_TEMPERATURE, DOT_TEMPERATURE, LOSS_WEIGHTINGS, SIMILARITIES, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m boostmdr.train",
        description="Contrastive fine-tuning of a dense bi-encoder (one process, or under torchrun with DDP).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=True, help="base model or checkpoint: local directory or cached hub id")
    add_settings_arguments(p)
    p.add_argument("--negatives", nargs="+", required=True, help="negatives files (docs/formats.md), languages mixed")
    p.add_argument("--corpus", nargs="+", required=True, metavar="LANG=PATH", help="prepared corpus.jsonl per language")
    p.add_argument("--out", required=True, help="output model directory (written atomically)")
    p.add_argument("--state-dir", required=True, help="resumable training state, kept outside --out")
    h = p.add_argument_group("hyperparameters")
    h.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training queries")
    h.add_argument("--batch-size", type=int, default=d.batch_size, help="queries per step, global (all processes)")
    h.add_argument("--group-size", type=int, default=d.group_size, help="1 positive + (group size - 1) negatives")
    h.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (AdamW)")
    h.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio, help="fraction of steps of linear warmup")
    h.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    h.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm, help="gradient clipping (0: off)")
    h.add_argument(
        "--similarity", choices=SIMILARITIES, default=None,
        help="score function; if unset, cos when the encoder normalises, else dot (cos needs --normalize)",
    )  # fmt: skip
    h.add_argument(
        "--temperature", type=float, default=None,
        help=f"scores are divided by it; if unset, {COS_TEMPERATURE} for cos, {DOT_TEMPERATURE} for dot",
    )  # fmt: skip
    h.add_argument(
        "--loss-weighting", choices=LOSS_WEIGHTINGS, default=d.loss_weighting,
        help="how hard-negative weights (a manifest's) enter the loss: the paper's equation, the authors' code, "
        "or inside the softmax (boostmdr.loss)",
    )  # fmt: skip
    h.add_argument("--seed", type=int, default=d.seed, help="seeds batches, groups and initialisation")
    h.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (optional cap)")
    h.add_argument("--save-steps", type=int, default=d.save_steps, help="save training state every N steps (0: never)")
    h.add_argument(
        "--length-buckets", type=int, default=d.length_buckets,
        help="encode a step's passages in this many chunks sorted by length, each padded to its own longest "
        "(less padding; 1: one padded batch)",
    )  # fmt: skip
    h.add_argument("--sampler", choices=sorted(SAMPLERS), default="shuffled", help="batch composition")
    h.add_argument("--sampler-arg", action="append", default=[], metavar="KEY=VALUE", help="option of the sampler")
    g = p.add_argument_group("GPU only (ignored on CPU)")
    g.add_argument("--fp16", action="store_true")
    g.add_argument("--bf16", action="store_true")
    g.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument(
        "--log", "--log-file", dest="log", default=None,
        help="log file (under torchrun write --log-file: torchrun's own parser takes --log for its --log-dir)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from boostmdr.trainer import train_from_args

    return train_from_args(args)


if __name__ == "__main__":
    from boostmdr.cli import run

    run(main)
