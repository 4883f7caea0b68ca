"""Checks ``train-bf16``, ``train-bf16-checkpointing`` and ``train-resume``: the project's trainer
(``python -m boostmdr.train``) launched through ``torchrun`` with one process per GPU, as the workflow
launches it, on the XLM-R-large shape (mE5-large, BGE-M3: the larger of the paper's two shapes) with
the paper's batch: 24 queries x 8 passages (1 positive, 7 negatives), queries cut at 64 tokens and
passages at 256.

* ``train-bf16``: bf16 autocast, no gradient checkpointing. The loss must fall (mean of the last 50
  steps below the mean of the first 50, i.e. with 60 steps the last 10 below the first 10; the model has random weights and a raised learning rate, and
  each query is made of words of its positive passage, so there is something to learn). Reported:
  query groups/s, peak GPU memory (from the trainer's summary), and training MFU, i.e. three forward
  passes per step, computed from the data's real token lengths (the trainer pads every batch to its
  longest text, so padding shows as lost utilisation; :mod:`benchmarks.gpu.hardware`).
* ``train-bf16-checkpointing``: the same with ``--gradient-checkpointing``. Same checks, and its
  weights must match ``train-bf16``'s within bf16 tolerance: recomputation must not change gradients.
* ``train-resume``: the checkpointing run again with ``--save-steps``, killed with SIGKILL once a
  training state is saved, and started again with the same command. It must resume from the saved
  step and end with the weights of the uninterrupted ``train-bf16-checkpointing`` run within the
  tolerance.

Weights are compared by ``||W_a - W_b|| / ||W_b - W_0||`` over all parameters, with ``W_0`` the
starting weights: how much of what training changed differs between the runs. On CPU training is
deterministic and the runs must agree to float32 rounding (:data:`TOLERANCE`). On GPU two runs of the
same command already differ (non-deterministic kernels, e.g. atomics in attention backward; Adam turns
tiny gradient differences on near-zero gradients into step-size differences), so the check measures
that noise: the ``train-bf16-checkpointing`` command runs a second time (:data:`NOISE_RUN`, started by
``train-resume`` beside its interrupted run, whose speed nothing reports; both need 13.8 GiB at the paper's
batch), and a comparison passes when it differs by at most :data:`NOISE_FACTOR` times the two identical
runs' difference (and never needs less than the CPU tolerance). Measured on one H100 (lr 2e-5, 100 steps):
checkpointing vs not 6.8e-2, with near-identical loss curves (4.628 vs 4.649 over the last 50 steps); a
fixed 5e-2 tolerance failed that correct run. On one H200 (60 steps): identical runs 3.1e-2 apart,
checkpointing vs not 3.4e-2, resumed vs uninterrupted 3.1e-2.

Order: ``train-bf16``, ``train-resume`` (which first runs the uninterrupted checkpointing reference, alone on
the device: its throughput is ``train-bf16-checkpointing``'s), then ``train-bf16-checkpointing``, which reads
the runs already made. Each run is 60 steps (``--train-steps``), which keeps the five launches of the
trainer near 3 minutes and the whole check under 5.
A resume that lost anything (optimizer moments, the position in the data, the dropout RNG) changes the
trajectory, not only its rounding.

On CPU (``--device cpu --tiny``) the trainer ignores ``--bf16`` and ``--gradient-checkpointing`` (it
logs so): the rows then check the launch, the learning, the summary and kill-and-resume.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.gpu import fixtures
from benchmarks.gpu.check_encode import encoder_dir
from benchmarks.gpu.core import CheckFailed, Context, Outcome, fmt_pct, register
from benchmarks.gpu.hardware import FlopModel, mfu, peak_of

SHAPE = "xlmr-large"
TOLERANCE = {"cpu": 1e-5, "cuda": 1e-5}
"""The least a comparison is allowed (float32 rounding); on GPU the measured noise of two identical runs sets it."""
NOISE_FACTOR = 3.0
"""Largest relative weight difference (see the module docstring) between runs that must agree."""
NEGATIVES_PER_QUERY = 30
NOISE_RUN = "bf16-checkpointing-repeat"
"""The second run of the ``train-bf16-checkpointing`` command, whose difference from the first is the noise."""


@dataclass(frozen=True)
class Setup:
    shape: fixtures.Shape
    model: Path
    data: fixtures.TrainingData
    processes: int


@dataclass(frozen=True)
class Run:
    out: Path
    summary: dict[str, Any]
    wall_seconds: float
    output: Path
    """The launch's stdout and stderr (torchrun's and the trainer's)."""


def _setup(ctx: Context) -> Setup:
    def build() -> Setup:
        sc = ctx.scale
        shape = fixtures.shape(SHAPE, ctx.tiny)
        data = fixtures.write_training_data(
            ctx.workdir / "train-data", sc.train_queries, sc.train_corpus, sc.words, sc.p_max_len,
            min(NEGATIVES_PER_QUERY, sc.train_corpus - sc.train_queries), ctx.seed,
        )  # fmt: skip
        return Setup(shape, encoder_dir(ctx, shape), data, _processes(ctx))

    return ctx.cached("train:setup", build)


def _processes(ctx: Context) -> int:
    """One process per GPU, as many as divide the global batch (the trainer requires it)."""
    if ctx.device != "cuda":
        return 1
    import torch

    gpus = torch.cuda.device_count()
    return max(d for d in range(1, gpus + 1) if ctx.scale.train_batch % d == 0)


def _command(ctx: Context, setup: Setup, out: Path, state: Path, checkpointing: bool, save_steps: int) -> list[str]:
    sc = ctx.scale
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(setup.processes),
        "-m", "boostmdr.train", "--model", str(setup.model),
        *fixtures.encoder_flags(setup.shape, sc.q_max_len, sc.p_max_len),
        "--negatives", str(setup.data.negatives), "--corpus", f"{setup.data.lang}={setup.data.corpus}",
        "--out", str(out), "--state-dir", str(state),
        "--epochs", "100", "--max-steps", str(sc.train_steps), "--batch-size", str(sc.train_batch),
        "--group-size", str(sc.train_group), "--lr", str(sc.train_lr), "--warmup-ratio", "0.1",
        "--save-steps", str(save_steps), "--seed", str(ctx.seed + 7), "--bf16", "--no-progress",
    ]  # fmt: skip
    if checkpointing:
        cmd.append("--gradient-checkpointing")
    if ctx.threads:
        cmd += ["--threads", str(ctx.threads)]
    return cmd


def _launch(ctx: Context, cmd: list[str], output: Path) -> subprocess.Popen:
    """Start ``cmd`` (torchrun) in a session of its own, output appended to ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=ctx.subprocess_env(),
                                cwd=ctx.workdir, start_new_session=True)  # fmt: skip


def descendants(pid: int) -> list[int]:
    """Process ids of every descendant of ``pid``, read from ``/proc`` (Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (command)": state, ppid, ...
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """SIGKILL the launch and all its descendants, by process id, and wait until they are gone.

    torchrun starts its workers in sessions of their own, so killing torchrun's process group would
    leave the trainer running; this is what a node failure or a scheduler's hard kill does instead.
    """
    pids = descendants(proc.pid)
    for pid in [*pids, proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() and not _is_zombie(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise CheckFailed(f"processes {pids} survived SIGKILL for {timeout:.0f} s")
        time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rindex(")") + 2 :].split()[0] == "Z"


def _tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _run(ctx: Context, name: str, checkpointing: bool) -> Run:
    """The trainer to completion (no state saves), once per run of the checks: a later check that needs
    the same run gets its result, or its failure, without training again. A run started in the
    background (:func:`_start`) is waited for."""
    key = f"train:run:{name}"
    if key not in ctx.cache:
        _start(ctx, name, checkpointing)
    pending = ctx.cache[key]
    if isinstance(pending, _Pending):
        try:
            ctx.cache[key] = _finish(ctx, pending)
        except CheckFailed as err:
            ctx.cache[key] = err
    result = ctx.cache[key]
    if isinstance(result, CheckFailed):
        raise result
    return result


def _settle(ctx: Context, name: str) -> None:
    """Wait for run ``name`` if it was started in the background (its result or failure is kept)."""
    if isinstance(ctx.cache.get(f"train:run:{name}"), _Pending):
        try:
            _run(ctx, name, checkpointing=True)
        except CheckFailed:
            pass


@dataclass(frozen=True)
class _Pending:
    proc: subprocess.Popen
    out: Path
    output: Path
    started: float


def _start(ctx: Context, name: str, checkpointing: bool) -> None:
    """Launch run ``name`` without waiting for it (nothing happens if it was started already)."""
    key = f"train:run:{name}"
    if key in ctx.cache:
        return
    setup = _setup(ctx)
    base = ctx.workdir / "train" / name
    cmd = _command(ctx, setup, base / "out", base / "state", checkpointing, save_steps=0)
    ctx.cache[key] = _Pending(_launch(ctx, cmd, base / "output.txt"), base / "out", base / "output.txt", time.perf_counter())


def _complete(ctx: Context, cmd: list[str], out: Path, output: Path) -> Run:
    return _finish(ctx, _Pending(_launch(ctx, cmd, output), out, output, time.perf_counter()))


def _finish(ctx: Context, run: _Pending) -> Run:
    """Wait for a launched run (within the scale's time limit from its start) and read its summary."""
    left = ctx.scale.train_timeout_s - (time.perf_counter() - run.started)
    try:
        rc = run.proc.wait(timeout=max(left, 0.0))
    except subprocess.TimeoutExpired:
        _kill(run.proc)
        raise CheckFailed(f"the trainer ran past {ctx.scale.train_timeout_s:.0f} s; its output ends:\n{_tail(run.output)}")
    if rc != 0:
        raise CheckFailed(f"the trainer exited with {rc}; its output ends:\n{_tail(run.output)}")
    summary = _read_json(run.out / "training_summary.json")
    return Run(run.out, summary, time.perf_counter() - run.started, run.output)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def weight_difference(a: Path, b: Path, base: Path) -> dict[str, float]:
    """``||W_a - W_b|| / ||W_b - W_0||`` and the largest absolute difference, over all tensors of two
    saved models (``model.safetensors``) and their starting point."""
    import torch
    from safetensors.torch import load_file

    wa, wb, w0 = (load_file(p / "model.safetensors") for p in (a, b, base))
    if wa.keys() != wb.keys():
        raise CheckFailed(f"the two models have different tensors: {sorted(wa.keys() ^ wb.keys())[:5]}")
    diff_sq = moved_sq = 0.0
    max_abs = 0.0
    for k, tb in wb.items():
        ta = wa[k].float()
        tb = tb.float()
        diff_sq += torch.linalg.vector_norm(ta - tb).item() ** 2
        moved_sq += torch.linalg.vector_norm(tb - w0[k].float()).item() ** 2
        max_abs = max(max_abs, (ta - tb).abs().max().item())
    if moved_sq == 0.0:
        raise CheckFailed("training did not change the weights at all")
    return {"relative": math.sqrt(diff_sq / moved_sq), "max_abs": max_abs, "moved_norm": math.sqrt(moved_sq)}


def _train_metrics(ctx: Context, setup: Setup, run: Run) -> dict[str, Any]:
    """Numbers of one completed run, checked: all steps done, every process joined, the loss fell."""
    from boostmdr.trainer import LOSS_WINDOW

    sc, s = ctx.scale, run.summary
    first, last = s.get(f"mean_loss_first_{LOSS_WINDOW}_steps"), s.get(f"mean_loss_last_{LOSS_WINDOW}_steps")
    shape = setup.shape
    prefix = 1 if shape.query_prefix else 0
    flop = FlopModel.for_layers(shape.layers, shape.hidden, shape.intermediate)
    q = [min(n + prefix, sc.q_max_len) for n in setup.data.query_tokens]
    p = [min(n + prefix, sc.p_max_len) for n in setup.data.passage_tokens]
    group_flops = 3 * (flop.forward_flops(q) / len(q) + sc.train_group * flop.forward_flops(p) / len(p))
    gps = s.get("groups_per_second") or 0.0
    peak_bytes = s.get("peak_gpu_memory_allocated_bytes")
    m = {
        "steps": s["steps"], "world_size": s["world_size"], "groups_per_second": gps,
        "loss_first_window": first, "loss_last_window": last, "final_loss": s["final_loss"],
        "train_seconds": s["train_seconds_this_run"], "wall_seconds": run.wall_seconds,
        "peak_gpu_memory_gib": peak_bytes / 2**30 if peak_bytes is not None else None,
        "peak_gpu_memory_reserved_gib": (s["peak_gpu_memory_reserved_bytes"] / 2**30
                                         if s.get("peak_gpu_memory_reserved_bytes") is not None else None),
        "model_flops_per_group": group_flops, "mfu": mfu(gps * group_flops, peak_of(ctx.device_info)),
        "batch": f"{sc.train_batch} queries x {sc.train_group} passages, {sc.q_max_len}/{sc.p_max_len} tokens",
        "shape": shape.key, "processes": setup.processes,
    }  # fmt: skip
    if s["steps"] != sc.train_steps:
        raise CheckFailed(f"ran {s['steps']} steps, asked for {sc.train_steps}", m)
    if s["world_size"] != setup.processes:
        raise CheckFailed(f"world size {s['world_size']}, launched {setup.processes} processes", m)
    if first is None or last is None or not (math.isfinite(first) and math.isfinite(last)) or not last < first:
        raise CheckFailed(f"the loss did not fall: first {LOSS_WINDOW} steps {first}, last {LOSS_WINDOW} {last}", m)
    return m


def _summary(m: dict[str, Any]) -> str:
    gpu = ""
    if m["peak_gpu_memory_gib"] is not None:
        gpu = f", MFU {fmt_pct(m['mfu'])}, peak {m['peak_gpu_memory_gib']:.1f} GiB"
    return (
        f"{m['shape']} {m['batch'].split(',')[0]}: loss {m['loss_first_window']:.3f} -> {m['loss_last_window']:.3f}, "
        f"{m['groups_per_second']:.1f} groups/s{gpu}, {m['processes']} process(es)"
    )


def _cpu_note(ctx: Context) -> list[str]:
    if ctx.device == "cpu":
        return ["CPU: the trainer ignores --bf16 and --gradient-checkpointing (GPU only)"]
    return []


def _tolerance(ctx: Context, setup: Any, m: dict[str, Any]) -> float:
    """The allowed relative weight difference: on CPU :data:`TOLERANCE`; on GPU :data:`NOISE_FACTOR` times
    the difference between two runs of the same ``train-bf16-checkpointing`` command (the second run,
    :data:`NOISE_RUN`, is made once; ``train-resume`` starts it beside its own runs)."""
    tol = TOLERANCE[ctx.device]
    if ctx.device == "cpu":
        return tol
    noise = weight_difference(_run(ctx, NOISE_RUN, checkpointing=True).out, _run(ctx, "bf16-checkpointing", checkpointing=True).out,
                              setup.model)["relative"]
    m["noise_identical_runs"] = noise
    return max(tol, NOISE_FACTOR * noise)


@register("train-bf16", "torchrun + boostmdr.train, bf16 autocast, paper batch")
def train_bf16(ctx: Context) -> Outcome:
    setup = _setup(ctx)
    run = _run(ctx, "bf16", checkpointing=False)
    m = _train_metrics(ctx, setup, run)
    return Outcome(_summary(m), m, _cpu_note(ctx))


@register("train-resume", "SIGKILL after a saved state, same command again: same weights")
def train_resume(ctx: Context) -> Outcome:
    sc = ctx.scale
    setup = _setup(ctx)
    m: dict[str, Any] = {"save_steps": sc.train_save_steps, "steps": sc.train_steps}
    # The uninterrupted run first, alone on the device (its throughput is train-bf16-checkpointing's);
    # then the noise run beside the interrupted one, whose speed nothing reports.
    reference = _run(ctx, "bf16-checkpointing", checkpointing=True)
    if ctx.device == "cuda":
        _start(ctx, NOISE_RUN, checkpointing=True)
    try:
        return _kill_and_resume(ctx, setup, ctx.workdir / "train" / "resume", reference, m)
    finally:
        _settle(ctx, NOISE_RUN)


def _kill_and_resume(ctx: Context, setup: Setup, base: Path, reference: Run, m: dict[str, Any]) -> Outcome:
    """``train-resume`` once the uninterrupted reference has run: kill at the first save, run again, compare."""
    sc = ctx.scale
    out, state, output = base / "out", base / "state", base / "output.txt"
    cmd = _command(ctx, setup, out, state, checkpointing=True, save_steps=sc.train_save_steps)
    victim = _launch(ctx, cmd, output)
    deadline = time.monotonic() + sc.train_timeout_s
    saved: list[Path] = []
    while not saved:
        saved = [p for p in state.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()] if state.is_dir() else []
        if victim.poll() is not None and not saved:
            raise CheckFailed(f"the run ended (exit {victim.returncode}) before its first save:\n{_tail(output)}", m)
        if time.monotonic() > deadline:
            _kill(victim)
            raise CheckFailed(f"no training state saved within {sc.train_timeout_s:.0f} s:\n{_tail(output)}", m)
        time.sleep(0.05)
    workers = descendants(victim.pid)
    _kill(victim)
    m["killed_processes"] = 1 + len(workers)
    if victim.returncode == 0:
        raise CheckFailed("the run finished before it could be killed; lower the save interval", m)
    saved = sorted(p.name for p in state.iterdir() if p.name.startswith("checkpoint-"))
    m["killed_with_states"] = saved
    if len(saved) != 1 or out.exists():
        raise CheckFailed(f"after the kill: states {saved}, output present: {out.exists()}", m)
    saved_step = int(saved[0].split("-")[1])

    resumed = _complete(ctx, cmd, out, output)
    m["resumed_from_step"] = resumed.summary["resumed_from_step"]
    m["resumed_run_wall_seconds"] = resumed.wall_seconds
    if m["resumed_from_step"] != saved_step or resumed.summary["steps"] != sc.train_steps:
        raise CheckFailed(
            f"resumed from {m['resumed_from_step']} (saved: {saved_step}), ended at step {resumed.summary['steps']}", m
        )
    d = weight_difference(resumed.out, reference.out, setup.model)
    m["weights_vs_uninterrupted"] = d
    m["final_loss"] = resumed.summary["final_loss"]
    m["final_loss_uninterrupted"] = reference.summary["final_loss"]
    tol = _tolerance(ctx, setup, m)
    m["tolerance"] = tol
    if not d["relative"] <= tol:
        raise CheckFailed(f"resumed weights differ from the uninterrupted run's by {d['relative']:.3e} > {tol:g}", m)
    summary = (
        f"killed after the step-{saved_step} save, resumed to {sc.train_steps}: weights vs uninterrupted "
        f"{d['relative']:.1e} (tol {tol:g}), final loss {m['final_loss']:.4f} vs {m['final_loss_uninterrupted']:.4f}"
    )
    return Outcome(summary, m, _cpu_note(ctx))


@register("train-bf16-checkpointing", "the same with gradient checkpointing; same weights")
def train_bf16_checkpointing(ctx: Context) -> Outcome:
    setup = _setup(ctx)
    run = _run(ctx, "bf16-checkpointing", checkpointing=True)
    m = _train_metrics(ctx, setup, run)
    notes = _cpu_note(ctx)
    summary = _summary(m)
    try:
        plain = _run(ctx, "bf16", checkpointing=False)
    except CheckFailed as err:  # e.g. out of memory without checkpointing: nothing to compare with
        notes.append(f"no comparison with train-bf16: {str(err).splitlines()[0]}")
    else:
        d = weight_difference(run.out, plain.out, setup.model)
        m["weights_vs_no_checkpointing"] = d
        tol = _tolerance(ctx, setup, m)
        summary += f"; weights vs no checkpointing {d['relative']:.1e} (tol {tol:g})"
        if not d["relative"] <= tol:
            raise CheckFailed(f"weights differ from train-bf16's by {d['relative']:.3e} > {tol:g} (relative)", m)
    return Outcome(summary, m, notes)
