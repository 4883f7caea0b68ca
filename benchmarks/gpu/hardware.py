"""The chip, its published dense bf16 peak, and model FLOP utilisation (MFU) of a transformer encoder.

Model FLOPs of one forward pass over a sequence of ``n`` real (non-padding) tokens::

    F(n) = 2 * P * n  +  4 * L * d * n**2

``P`` is the number of weights in the model's matrix multiplications (every ``nn.Linear`` except the
pooler, which runs once per sequence, not per token; for BERT-like layers ``P = L * (4 d^2 + 2 d f)``),
``L`` the number of layers, ``d`` the hidden size, ``f`` the feed-forward size. The first term is one
multiply and one add per weight per token; the second is attention: ``Q K^T`` and ``A V`` each cost
``2 * n * d`` per token per layer. The embedding lookup, layer norms, softmax, biases and activations
are left out (the usual convention; together they are a few per cent). A training step costs three
forward passes (the backward pass is twice the forward); recomputation under gradient checkpointing is
*not* counted: it is hardware work, not model work.

MFU is achieved model FLOP/s divided by the chip's published dense bf16 peak (without structured
sparsity). Counting only real tokens means padding shows up as lost utilisation, which is what it is.
:func:`device_peak` looks the peak up from the device name; an unknown device gets no MFU, with the
reason. The numbers are NVIDIA's data-sheet values for dense BF16 tensor-core throughput.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PEAK_BF16_TFLOPS: tuple[tuple[str, str, float], ...] = (
    # (pattern on the lower-cased device name, product, dense bf16 TFLOP/s); most specific first
    (r"\bgh200\b", "GH200", 989.0),
    (r"\bh200 nvl\b", "H200 NVL", 835.0),
    (r"\bh200\b", "H200 SXM", 989.0),
    (r"\bh100 nvl\b", "H100 NVL", 835.0),
    (r"\bh100 pcie\b", "H100 PCIe", 756.0),
    (r"\bh100\b", "H100 SXM", 989.0),  # "NVIDIA H100 80GB HBM3"
    (r"\bh800 pcie\b", "H800 PCIe", 756.0),
    (r"\bh800\b", "H800 SXM", 989.0),
    (r"\bb200\b", "B200 (HGX)", 2250.0),
    (r"\ba100\b", "A100", 312.0),
    (r"\ba800\b", "A800", 312.0),
    (r"\bl40s\b", "L40S", 362.0),
    (r"\bl40\b", "L40", 181.0),
    (r"\bl4\b", "L4", 121.0),
    (r"\ba40\b", "A40", 149.7),
    (r"\ba10\b", "A10", 125.0),
)
"""Published dense bf16 peaks. Extend it for another chip (a name that matches nothing gets no MFU)."""


@dataclass(frozen=True)
class Peak:
    """A chip's dense bf16 peak, or why there is none (``tflops`` is then ``None``)."""

    product: str | None
    tflops: float | None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"product": self.product, "bf16_dense_tflops": self.tflops, "reason": self.reason or None}


def device_peak(name: str) -> Peak:
    """The dense bf16 peak of the device called ``name`` (``torch.cuda.get_device_name``)."""
    lowered = name.lower()
    for pattern, product, tflops in PEAK_BF16_TFLOPS:
        if re.search(pattern, lowered):
            return Peak(product, tflops)
    return Peak(None, None, f"no published dense bf16 peak known for {name!r} (add it to PEAK_BF16_TFLOPS)")


def matmul_params(model: Any) -> int:
    """``P``: weights of the model's ``nn.Linear`` layers, the pooler excluded (see the module docstring)."""
    import torch

    return sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and "pooler" not in name.split(".")
    )


@dataclass(frozen=True)
class FlopModel:
    """The quantities :func:`forward_flops` needs, read from a model once."""

    matmul_params: int
    layers: int
    hidden: int

    @classmethod
    def for_layers(cls, layers: int, hidden: int, intermediate: int) -> FlopModel:
        """A BERT-like encoder: per layer Q, K, V and output projections (``4 d^2``) and the two
        feed-forward matrices (``2 d f``)."""
        return cls(layers * (4 * hidden * hidden + 2 * hidden * intermediate), layers, hidden)

    @classmethod
    def of(cls, model: Any) -> FlopModel:
        config = model.config
        return cls(matmul_params(model), int(config.num_hidden_layers), int(config.hidden_size))

    def forward_flops(self, lengths: Iterable[int]) -> float:
        """Model FLOPs of one forward pass over sequences of these real token lengths: ``sum F(n)``."""
        total = 0.0
        for n in lengths:
            total += 2.0 * self.matmul_params * n + 4.0 * self.layers * self.hidden * n * n
        return total

    def to_json(self) -> dict[str, Any]:
        return {"matmul_params": self.matmul_params, "layers": self.layers, "hidden": self.hidden}


def mfu(flops_per_second: float, peak: Peak) -> float | None:
    """Achieved model FLOP/s as a fraction of the peak; ``None`` when the peak is unknown."""
    if peak.tflops is None:
        return None
    return flops_per_second / (peak.tflops * 1e12)


def describe_device(device: str) -> dict[str, Any]:
    """Name, compute capability, memory and bf16 peak of the device the checks run on."""
    import torch

    if device == "cpu":
        import platform

        return {
            "type": "cpu",
            "name": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "peak": Peak(None, None, "CPU: MFU is reported for GPUs only").to_json(),
        }
    props = torch.cuda.get_device_properties(0)
    return {
        "type": "cuda",
        "name": props.name,
        "count": torch.cuda.device_count(),
        "capability": f"sm_{props.major}{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "multiprocessors": props.multi_processor_count,
        "bf16_supported": torch.cuda.is_bf16_supported(),
        "peak": device_peak(props.name).to_json(),
    }


def peak_of(device_info: dict[str, Any]) -> Peak:
    """The :class:`Peak` recorded by :func:`describe_device`."""
    p = device_info["peak"]
    return Peak(p["product"], p["bf16_dense_tflops"], p["reason"] or "")
