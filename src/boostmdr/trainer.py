"""Contrastive fine-tuning of a bi-encoder: the trainer every fine-tuned row of the tables goes through.

``python -m boostmdr.train --model BASE --negatives a.jsonl b.jsonl --corpus sw=... --out DIR --state-dir S``
runs on one process, or under ``torchrun --nproc_per_node K -m boostmdr.train ...`` with
DistributedDataParallel (gloo on CPU, nccl on GPU). In both cases:

* batches come from a :class:`boostmdr.sampler.BatchSampler` (global batches; each process encodes its
  contiguous slice), groups from :class:`boostmdr.training_data.GroupDataset`, optional weights from a
  :class:`boostmdr.sampler.WeightProvider`; the workflow replays a batch manifest (``--sampler manifest``,
  stage 3), whose hard-negative weights enter the loss as ``--loss-weighting`` says
  (:func:`boostmdr.loss.hard_negative_weighting`: the paper's equation, the authors' code, or the softmax);
* query and passage embeddings are all-gathered (local shard kept in the graph) and every process computes
  :func:`boostmdr.loss.contrastive_loss` over the whole global batch; the backward loss is scaled by the
  world size, so DDP's gradient average equals the one-process gradient of the same global batch;
* AdamW with linear warmup and linear decay, gradient clipping, fp16/bf16 autocast and gradient
  checkpointing on GPU only;
* training state (model, optimizer, scheduler, grad scaler, epoch and position in the epoch, step, every
  process's RNG states) is saved atomically every ``--save-steps`` steps in ``--state-dir``, outside the
  output; the same command started again resumes from the last save and ends with the same weights;
* the output is written atomically: a Hugging Face model directory plus ``boostmdr_encoder.json``, the
  sentence-transformers description of the same pooling, and ``training_summary.json``.

The command line is :mod:`boostmdr.train` and its options live in :mod:`boostmdr.train_config`, both importable
without torch; :func:`train_from_args` is what the command runs once its arguments are parsed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from boostmdr.encoder import Encoder, EncoderSettings, resolve_settings, settings_overrides
from boostmdr.formats import atomic_directory, write_json
from boostmdr.loss import (
    LossOutput,
    contrastive_loss,
    distributed_loss_scale,
    gather_with_local_grad,
    hard_negative_weighting,
)
from boostmdr.sampler import (
    BatchSampler,
    BatchView,
    BatchWeights,
    WeightProvider,
    build_sampler,
    parse_sampler_args,
)
from boostmdr.train_config import COS_TEMPERATURE, DOT_TEMPERATURE, TrainConfig
from boostmdr.training_data import Group, GroupDataset, LoadStats, parse_corpus_args
from boostmdr.utils import seed_everything, set_threads, setup_logging

log = logging.getLogger(__name__)

SUMMARY_FILE = "training_summary.json"
CHECKPOINT_PREFIX = "checkpoint-"
LOSS_WINDOW = 50
"""Steps averaged in the summary's first- and last-window losses (``mean_loss_{first,last}_50_steps``)."""


@dataclass
class Progress:
    """Where training stands: the next batch is batch ``position`` of epoch ``epoch``; ``step`` done.

    ``first_losses`` and ``recent_losses`` are the losses of the first and of the latest
    :data:`LOSS_WINDOW` steps; both travel with the saved state, so a resumed run reports the same.
    """

    step: int = 0
    epoch: int = 0
    position: int = 0
    recent_losses: list[float] = field(default_factory=list)
    first_losses: list[float] = field(default_factory=list)


# ------------------------------------------------------------------------------------ distributed


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_distributed() -> Dist:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1); else one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


class _BiEncoder(torch.nn.Module):
    """One module whose forward embeds queries and passages, so DDP sees a single forward per step."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.model = encoder.model
        self._encoder = encoder

    def forward(self, queries: Mapping[str, torch.Tensor], passages: Sequence[Mapping[str, torch.Tensor]],
                order: torch.Tensor | None = None):  # fmt: skip
        """Query and passage embeddings; ``passages`` come in length buckets (:func:`length_buckets`) whose
        embeddings, concatenated, are put back in the batch's order by ``order``."""
        p = torch.cat([self._encoder.embed(chunk) for chunk in passages])
        return self._encoder.embed(queries), (p if order is None else p[order])


def length_buckets(
    batch: Mapping[str, torch.Tensor], buckets: int, multiple: int | None = None
) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor | None]:
    """A right-padded batch split into ``buckets`` chunks of rows sorted by length, each cut to its own
    longest row (rounded up to ``multiple``), and the permutation that restores the batch's order from
    the chunks' concatenation. Every row keeps its tokens and attention mask, so its embedding is what
    the whole batch gives it, up to float rounding of differently shaped products; the padding the
    forward pass computes shrinks from (longest in the batch) to (longest in the row's chunk).
    One bucket: the batch as it is and no permutation."""
    if buckets <= 1:
        return [dict(batch)], None
    lengths = batch["attention_mask"].sum(dim=1)
    by_length = torch.argsort(lengths, stable=True)
    chunks = []
    for rows in torch.tensor_split(by_length, min(buckets, len(by_length))):
        width = int(lengths[rows].max())
        if multiple:
            width = min(-(-width // multiple) * multiple, batch["attention_mask"].shape[1])
        chunks.append({k: v[rows, :width] for k, v in batch.items()})
    return chunks, torch.argsort(by_length).to(lengths.device)


# ------------------------------------------------------------------------------------------ state


def _rng_state() -> dict[str, Any]:
    """Every RNG's state as plain tensors and numbers, so the file loads with ``weights_only=True`` (no pickle)."""
    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
            "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(state_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step (incomplete ones never carry the final name)."""
    if not state_dir.is_dir():
        return None
    found = []
    for p in state_dir.iterdir():
        if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and p.name[len(CHECKPOINT_PREFIX) :].isdigit():
            found.append((int(p.name[len(CHECKPOINT_PREFIX) :]), p))
    return max(found)[1] if found else None


def save_state(
    state_dir: Path,
    progress: Progress,
    fingerprint: str,
    encoder: Encoder,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    dist_info: Dist,
) -> None:
    """Write ``checkpoint-{step}`` through a temporary directory renamed into place, then drop older ones.

    Collective: every process contributes its RNG state; the main process writes.
    """
    rng = _rng_state()
    if dist_info.world_size > 1:
        gathered: list[Any] = [None] * dist_info.world_size
        dist.all_gather_object(gathered, rng)
    else:
        gathered = [rng]
    if dist_info.is_main:
        state_dir.mkdir(parents=True, exist_ok=True)
        final = state_dir / f"{CHECKPOINT_PREFIX}{progress.step}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=state_dir))
        try:
            torch.save(encoder.model.state_dict(), tmp / "model.pt")
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            if scaler is not None:
                torch.save(scaler.state_dict(), tmp / "scaler.pt")
            torch.save(gathered, tmp / "rng.pt")
            record = {**dataclasses.asdict(progress), "fingerprint": fingerprint, "world_size": dist_info.world_size}
            write_json(tmp / "progress.json", record)
            if final.exists():  # a run that resumed before this step and got here again
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for p in state_dir.iterdir():
            if p != final and p.name.startswith((CHECKPOINT_PREFIX, f".{CHECKPOINT_PREFIX}")):
                shutil.rmtree(p, ignore_errors=True)
        log.info("saved training state at step %d to %s", progress.step, final)
    dist_info.barrier()


def load_state(
    checkpoint: Path,
    encoder: Encoder,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    dist_info: Dist,
) -> Progress:
    with open(checkpoint / "progress.json", encoding="utf-8") as fh:
        saved = json.load(fh)
    device = encoder.device
    encoder.model.load_state_dict(torch.load(checkpoint / "model.pt", map_location=device, weights_only=True))
    optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", map_location=device, weights_only=True))
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
    if scaler is not None and (checkpoint / "scaler.pt").exists():
        scaler.load_state_dict(torch.load(checkpoint / "scaler.pt", weights_only=True))
    rng = torch.load(checkpoint / "rng.pt", weights_only=True)
    if saved.get("world_size") == dist_info.world_size:
        _set_rng_state(rng[dist_info.rank])
    else:
        log.warning(
            "%s was saved by %s processes, this run has %d: random states (dropout) cannot be restored, "
            "so the result will differ slightly from an uninterrupted run",
            checkpoint,
            saved.get("world_size"),
            dist_info.world_size,
        )
    return Progress(
        saved["step"],
        saved["epoch"],
        saved["position"],
        list(saved.get("recent_losses", [])),
        list(saved.get("first_losses", [])),
    )


def remove_state(state_dir: Path) -> None:
    """Delete this trainer's checkpoints in ``state_dir`` (and the directory, if nothing else is in it)."""
    if not state_dir.is_dir():
        return
    for p in state_dir.iterdir():
        if p.is_dir() and p.name.startswith((CHECKPOINT_PREFIX, f".{CHECKPOINT_PREFIX}")):
            shutil.rmtree(p, ignore_errors=True)
    with contextlib.suppress(OSError):
        state_dir.rmdir()
    log.info("removed training state in %s", state_dir)


def check_similarity(config: TrainConfig, settings: EncoderSettings) -> None:
    """Training on cosine scores only makes sense if the checkpoint is encoded normalised: retrieval uses
    the inner product of the saved encoder's vectors, so it would not rank by what was trained."""
    if config.similarity == "cos" and not settings.normalize:
        raise ValueError(
            "--similarity cos trains on cosine scores, but the encoder settings have normalize=false, so "
            "retrieval with the checkpoint would rank by unnormalised inner products; pass --normalize, "
            "or --similarity dot"
        )


def _fingerprint(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------------------- training


def _autocast(device: torch.device, config: TrainConfig):
    if device.type == "cuda" and (config.fp16 or config.bf16):
        return torch.autocast("cuda", dtype=torch.bfloat16 if config.bf16 else torch.float16)
    return contextlib.nullcontext()


def train(
    encoder: Encoder,
    dataset: GroupDataset,
    sampler: BatchSampler,
    config: TrainConfig,
    state_dir: str | os.PathLike | None = None,
    weight_provider: WeightProvider | None = None,
    run_identity: Mapping[str, Any] | None = None,
    dist_info: Dist | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``encoder`` in place; returns the summary (steps, losses, throughput).

    ``run_identity`` (model, encoder settings, sampler choice, ...) joins the config and the dataset's
    fingerprint in the resume fingerprint: a checkpoint in ``state_dir`` from a run that differs in any of
    them is discarded (with a warning) instead of resumed.
    """
    dist_info = dist_info or Dist()
    check_similarity(config, encoder.settings)
    world = dist_info.world_size
    device = encoder.device
    if dataset.group_size != config.group_size:
        raise ValueError(f"dataset built with group size {dataset.group_size}, config says {config.group_size}")

    steps_per_epoch = len(sampler)
    if steps_per_epoch == 0:
        raise ValueError("the sampler yields no batch; lower --batch-size or add training queries")
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    warmup_steps = math.ceil(config.warmup_ratio * total_steps)

    if device.type != "cuda":
        for flag in ("fp16", "bf16", "gradient_checkpointing"):
            if getattr(config, flag):
                log.info("--%s is for GPUs; ignored on %s", flag.replace("_", "-"), device.type)
    elif config.gradient_checkpointing:
        encoder.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    encoder.model.train()
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    named = [(n, p) for n, p in encoder.model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for n, p in named if not n.endswith(no_decay)], "weight_decay": config.weight_decay},
            {"params": [p for n, p in named if n.endswith(no_decay)], "weight_decay": 0.0},
        ],
        lr=config.lr,
        fused=device.type in ("cpu", "cuda"),  # one kernel for all parameters: ~7x faster steps than the loop
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(_linear_warmup_decay, warmup_steps, total_steps))
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and config.fp16 else None

    fingerprint = _fingerprint(
        {
            "config": config.result_fields(),
            "data": dataset.fingerprint(),
            "batches": sampler.fingerprint(),
            "run": dict(run_identity or {}),
        }
    )
    progress = Progress()
    resumed_from = None
    state_path = Path(state_dir) if state_dir else None
    checkpoint = latest_checkpoint(state_path) if state_path else None
    if checkpoint is not None:
        with open(checkpoint / "progress.json", encoding="utf-8") as fh:
            saved_fp = json.load(fh).get("fingerprint")
        if saved_fp == fingerprint:
            progress = load_state(checkpoint, encoder, optimizer, scheduler, scaler, dist_info)
            resumed_from = progress.step
            log.info(
                "resuming from %s: step %d, epoch %d, batch %d",
                checkpoint, progress.step, progress.epoch, progress.position,
            )  # fmt: skip
        else:
            log.warning(
                "%s holds the state of a different run (other settings, data or model); starting afresh", checkpoint
            )
            dist_info.barrier()
            if dist_info.is_main:
                shutil.rmtree(checkpoint)
            dist_info.barrier()

    module = _BiEncoder(encoder)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # Parameters outside the embedding path (e.g. BERT's pooler) get no gradient.
        module = DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )

    log.info(
        "training: %d queries, %d steps per epoch x %d epochs -> %d steps (warmup %d), "
        "global batch %d x group %d, %d process(es)",
        len(dataset), steps_per_epoch, config.epochs, total_steps, warmup_steps,
        config.batch_size, config.group_size, world,
    )  # fmt: skip
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total_steps, initial=progress.step, desc="train", unit="step", dynamic_ncols=True,
        disable=not (show_progress and dist_info.is_main),
    )  # fmt: skip
    last_loss = float("nan")
    t_start = time.perf_counter()
    steps_this_run = groups_this_run = 0
    while progress.step < total_steps and progress.epoch < config.epochs:
        sampler.set_epoch(progress.epoch)
        for indices in itertools.islice(iter(sampler), progress.position, None):
            groups = [dataset.group(i, progress.epoch) for i in indices]
            weights = weight_provider(BatchView(progress.epoch, groups)) if weight_provider else None
            out = _train_step(module, encoder, groups, weights, config, optimizer, scheduler, scaler, dist_info)
            last_loss = out.loss.item()
            progress.step += 1
            progress.position += 1
            progress.recent_losses = (progress.recent_losses + [last_loss])[-LOSS_WINDOW:]
            if len(progress.first_losses) < LOSS_WINDOW:
                progress.first_losses.append(last_loss)
            steps_this_run += 1
            groups_this_run += len(indices)
            bar.update(1)
            bar.set_postfix(
                loss=f"{last_loss:.4f}", acc=f"{out.accuracy.item():.2f}", epoch=progress.epoch,
                groups_s=f"{groups_this_run / (time.perf_counter() - t_start):.1f}",
            )  # fmt: skip
            if progress.step >= total_steps:
                break
            if config.save_steps and state_path and progress.step % config.save_steps == 0:
                save_state(state_path, progress, fingerprint, encoder, optimizer, scheduler, scaler, dist_info)
        else:  # the epoch ran out (also when a resumed epoch had no batch left)
            progress.epoch += 1
            progress.position = 0
    bar.close()
    elapsed = time.perf_counter() - t_start
    encoder.model.eval()
    summary = {
        "steps": progress.step,
        "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "epochs": round(progress.step / steps_per_epoch, 4),
        "resumed_from_step": resumed_from,
        "final_loss": last_loss if steps_this_run else (progress.recent_losses[-1] if progress.recent_losses else None),
        f"mean_loss_first_{LOSS_WINDOW}_steps": float(np.mean(progress.first_losses)) if progress.first_losses else None,
        f"mean_loss_last_{LOSS_WINDOW}_steps": float(np.mean(progress.recent_losses)) if progress.recent_losses else None,
        "train_seconds_this_run": round(elapsed, 3),
        "groups_per_second": round(groups_this_run / elapsed, 3) if steps_this_run else None,
        "world_size": world,
        # this process's peak since it started (model loading included); None on CPU
        "peak_gpu_memory_allocated_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "peak_gpu_memory_reserved_bytes": torch.cuda.max_memory_reserved(device) if device.type == "cuda" else None,
        "config": dataclasses.asdict(config),
    }
    log.info(
        "done: %d steps, final loss %.4f, %.1f groups/s",
        progress.step, summary["final_loss"] or float("nan"), summary["groups_per_second"] or 0.0,
    )  # fmt: skip
    return summary


def _train_step(
    module: torch.nn.Module,
    encoder: Encoder,
    groups: Sequence[Group],
    weights: BatchWeights | None,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    dist_info: Dist,
) -> LossOutput:
    """One optimisation step on a global batch: this process encodes its slice, the loss sees all of it."""
    n, world = len(groups), dist_info.world_size
    if n % world:
        raise ValueError(
            f"a batch of {n} queries cannot be split over {world} processes; "
            "the sampler must yield batches divisible by the number of processes"
        )
    local = groups[dist_info.rank * (n // world) : (dist_info.rank + 1) * (n // world)]
    q_batch = encoder.tokenize([g.query for g in local], "query")
    p_batch = encoder.tokenize([p for g in local for p in g.passages], "passage")
    p_chunks, order = length_buckets(p_batch, config.length_buckets, encoder.pad_multiple())
    with _autocast(encoder.device, config):
        q_emb, p_emb = module(q_batch, p_chunks, order)
    out = contrastive_loss(
        gather_with_local_grad(q_emb),
        gather_with_local_grad(p_emb),
        group_size=config.group_size,
        temperature=config.temperature,
        similarity=config.similarity,
        **_weight_kwargs(weights, config.loss_weighting),
    )
    loss = out.loss * distributed_loss_scale()
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if config.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(encoder.model.parameters(), config.max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return out


def _linear_warmup_decay(warmup: int, total: int, step: int) -> float:
    """Learning-rate factor: linear 0 -> 1 over ``warmup`` steps, then linear 1 -> 0 at ``total``."""
    if step < warmup:
        return step / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _weight_kwargs(weights: BatchWeights | None, loss_weighting: str) -> dict[str, Any]:
    """:func:`contrastive_loss` arguments of a batch's weights; hard-negative slot weights go through
    :func:`hard_negative_weighting` (they may not be combined with the other two kinds)."""
    if weights is None:
        return {}
    if weights.hard_negatives is not None:
        if weights.negatives is not None or weights.queries is not None:
            raise ValueError("a weight provider gave hard-negative weights together with passage or query weights")
        return hard_negative_weighting(weights.hard_negatives, loss_weighting)
    return {"weights": weights.negatives, "query_weights": weights.queries}


# ------------------------------------------------------------------------------------------ output


def write_output(encoder: Encoder, out: str | os.PathLike, summary: Mapping[str, Any]) -> Path:
    """Save the checkpoint through a temporary sibling directory, then swap it into place."""
    with atomic_directory(out) as tmp:
        encoder.save(tmp)
        write_json(tmp / SUMMARY_FILE, summary)
    log.info("wrote fine-tuned encoder to %s", out)
    return Path(out)


def remove_stale_output(out: str | os.PathLike) -> None:
    """Remove what an earlier run left in the output directory (Snakemake deletes only the weights file it
    tracks, so an old summary or config would otherwise sit beside a missing or half-made model)."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
        log.info("removed the earlier output %s (it is rebuilt from the start)", out)


# ------------------------------------------------------------------------------- command line


def train_from_args(args: argparse.Namespace) -> int:
    """The whole run of ``python -m boostmdr.train`` (:mod:`boostmdr.train`) from its parsed arguments."""
    dist_info = init_distributed()
    log_file = args.log
    if log_file and dist_info.rank > 0:
        log_file = f"{log_file}.rank{dist_info.rank}"
    setup_logging(log_file)
    set_threads(args.threads)
    try:
        settings = resolve_settings(args.model, None, settings_overrides(args))  # fail before reading data
        similarity = args.similarity or ("cos" if settings.normalize else "dot")
        temperature = args.temperature
        if temperature is None:
            temperature = COS_TEMPERATURE if similarity == "cos" else DOT_TEMPERATURE
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
        config = TrainConfig(**{**given, "similarity": similarity, "temperature": temperature})
        check_similarity(config, settings)
        if config.batch_size % dist_info.world_size:
            raise ValueError(
                f"--batch-size {config.batch_size} is the global batch and must be divisible by the "
                f"{dist_info.world_size} processes"
            )
        corpora = parse_corpus_args(args.corpus)
        if dist_info.is_main:
            remove_stale_output(args.out)
        seed_everything(config.seed)
        dataset, stats = GroupDataset.from_files(args.negatives, corpora, config.group_size, config.seed)
        sampler_options = parse_sampler_args(args.sampler_arg)
        sampler, provider = build_sampler(args.sampler, dataset, config.batch_size, config.seed, sampler_options)
        device = f"cuda:{dist_info.local_rank}" if torch.cuda.is_available() else "cpu"
        encoder = Encoder.from_pretrained(args.model, settings, device=device)
        identity = {
            "model": str(args.model),
            "encoder": encoder.settings.to_dict(),
            "sampler": args.sampler,
            "sampler_options": sampler_options,
        }
        summary = train(
            encoder, dataset, sampler, config, state_dir=args.state_dir, weight_provider=provider,
            run_identity=identity, dist_info=dist_info, show_progress=not args.no_progress,
        )
        summary.update(_data_summary(stats, args))
        summary["encoder"] = encoder.settings.to_dict()
        summary["model"] = str(args.model)
        if dist_info.is_main:
            write_output(encoder, args.out, summary)
            remove_state(Path(args.state_dir))  # finished: the state is no longer needed
        dist_info.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def _data_summary(stats: LoadStats, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "queries": stats.kept,
        "skipped_queries": {"no_negatives": stats.skipped_no_negatives, "no_positives": stats.skipped_no_positives},
        "data": stats.to_json(),
        "negatives_files": [str(p) for p in args.negatives],
        "sampler": args.sampler,
        "sampler_options": parse_sampler_args(args.sampler_arg),
    }
