"""Small helpers every CLI uses: logging to the rule's log file, seeding, thread limits."""

from __future__ import annotations

import logging
import os
import random
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, when given, to ``log_file`` (the rule's ``log:``), replacing earlier handlers."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w", encoding="utf-8"))
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)
    logging.captureWarnings(True)
    # faiss logs at INFO that it could not load its AVX-512 build before it loads the AVX2 one; in a
    # successful run's log that reads like a failure.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (when imported) for a reproducible step."""
    random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # numpy is a hard dependency; kept optional here for tiny tools
        pass
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    """Limit torch/faiss/BLAS threads to what the scheduler granted (the rule's ``threads``)."""
    if not threads:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
