"""The one dense encoder every backbone goes through: settings, pooling, and batched encoding.

A backbone is any Hugging Face encoder that ``AutoModel``/``AutoTokenizer`` can load from a local
directory or a hub id (offline). What turns its token states into a retrieval vector is described by
:class:`EncoderSettings` (pooling, normalisation, query/passage prefixes, maximum lengths). A trained
checkpoint stores those settings beside its weights as ``boostmdr_encoder.json``; loading the checkpoint
reads them back, so encoding cannot silently disagree with training.

The forward logic lives in one place: :func:`pool` (a pure function of token states and mask),
:meth:`Encoder.embed` (forward with gradients, for the trainer) and :meth:`Encoder.encode` (inference:
sorted by length, dynamically padded, ``inference_mode``, autocast only on GPU, order restored).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from boostmdr.encoder_settings import (  # noqa: F401 (re-exported: the settings belong with the encoder)
    POOLING_MODES,
    SETTINGS_FILE,
    EncoderSettings,
    Side,
    add_settings_arguments,
    resolve_settings,
    settings_overrides,
)

log = logging.getLogger(__name__)

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


# ----------------------------------------------------------------------------------------- pooling


def pool(last_hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool token states ``[batch, seq, dim]`` into ``[batch, dim]``.

    ``cls`` takes position 0 (right padding is assumed, as for BERT-style encoders); ``mean`` averages
    the states whose ``attention_mask`` is 1, so padding never contributes.
    """
    if mode == "cls":
        return last_hidden[:, 0]
    if mode == "mean":
        mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)
        summed = (last_hidden * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        return summed / counts
    raise ValueError(f"unknown pooling {mode!r}; valid choices are {', '.join(POOLING_MODES)}")


# ----------------------------------------------------------------------------------------- encoder


class Encoder:
    """A Hugging Face encoder plus :class:`EncoderSettings`: the single forward path for every backbone.

    Build it with :meth:`from_pretrained`. ``embed`` runs with gradients (training); ``encode_queries``
    and ``encode_passages`` return float32 NumPy arrays in input order (inference).
    """

    chunk_size = 8192
    """Texts tokenised (and length-sorted) together by :meth:`encode`."""
    cpu_max_tokens = 1024
    """Default cap on padded tokens per batch on CPU (measured with benchmarks/bench_encode.py)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, settings: EncoderSettings, device: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.model.to(self.device)
        self._check_lengths()

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        settings: EncoderSettings | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        device: str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Encoder:
        """Load a local checkpoint directory or hub id (offline) with the settings from :func:`resolve_settings`."""
        from transformers import AutoModel, AutoTokenizer

        resolved = resolve_settings(path, settings, overrides)
        name = str(path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            kwargs = {"dtype": dtype} if dtype is not None else {}
            model = AutoModel.from_pretrained(name, **kwargs)
        except OSError as err:
            raise OSError(
                f"cannot load encoder {name!r} (a local directory in the Hugging Face layout, or a hub id "
                f"already in the local cache; the hub is offline here): {err}"
            ) from err
        if tokenizer.pad_token is None:
            raise ValueError(f"the tokenizer of {name} has no padding token; batched encoding needs one")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model.eval()
        log.info("loaded encoder %s (%s, dim %d) with %s", name, type(model).__name__, _hidden_size(model), resolved)
        return cls(model, tokenizer, resolved, device=device)

    # -- properties

    @property
    def dim(self) -> int:
        """Size of the pooled vectors."""
        return _hidden_size(self.model)

    def _check_lengths(self) -> None:
        limit = getattr(self.model.config, "max_position_embeddings", None)
        tok_limit = getattr(self.tokenizer, "model_max_length", None)
        if tok_limit is not None and tok_limit < 1_000_000:
            limit = min(limit, tok_limit) if limit else tok_limit
        if limit:
            for name in ("q_max_len", "p_max_len"):
                if getattr(self.settings, name) > limit:
                    raise ValueError(
                        f"encoder setting {name}={getattr(self.settings, name)} exceeds what the model "
                        f"accepts ({limit} tokens); lower {name}"
                    )

    # -- tokenisation

    def with_prefix(self, texts: Sequence[str], side: Side) -> list[str]:
        prefix = self.settings.prefix(side)
        return [prefix + t for t in texts] if prefix else list(texts)

    def tokenize(self, texts: Sequence[str], side: Side) -> dict[str, torch.Tensor]:
        """Prefix, truncate to the side's maximum length and pad to the longest text: a model-ready batch."""
        batch = self.tokenizer(
            self.with_prefix(texts, side),
            truncation=True,
            max_length=self.settings.max_len(side),
            padding=True,
            padding_side="right",  # pool() takes position 0 for cls
            pad_to_multiple_of=self.pad_multiple(),
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in batch.items() if k in _MODEL_INPUTS}

    def pad_multiple(self) -> int | None:
        # Tensor cores like multiples of 8/16; on CPU extra padding is pure waste.
        return 16 if self.device.type == "cuda" else None

    # -- forward

    def embed(self, batch: Mapping[str, torch.Tensor], model: torch.nn.Module | None = None) -> torch.Tensor:
        """Forward a tokenised batch and pool (and normalise): ``[batch, dim]``, with gradients.

        ``model`` lets a trainer pass a wrapped copy of :attr:`model` (DDP, compiled); default: ``self.model``.
        """
        out = (model if model is not None else self.model)(**batch)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        reps = pool(hidden, batch["attention_mask"], self.settings.pooling)
        if self.settings.normalize:
            reps = F.normalize(reps, p=2, dim=-1)
        return reps

    def encode(
        self,
        texts: Sequence[str],
        side: Side,
        batch_size: int = 64,
        show_progress: bool = False,
        amp: bool = True,
        max_tokens: int | None = None,
    ) -> np.ndarray:
        """Encode ``texts`` as queries or passages: float32 ``[len(texts), dim]`` in input order.

        Texts are tokenised once, sorted by token length (longest first, so memory problems show at
        the first batch), padded per batch to that batch's longest text, and the rows are put back
        in input order at the end. A batch holds at most ``batch_size`` texts and at most
        ``max_tokens`` padded tokens, so short texts go in larger batches than long ones. ``max_tokens``
        ``None`` means :attr:`cpu_max_tokens` on CPU (small batches stay in cache there) and no token cap
        on GPU; ``0`` disables the cap.
        """
        if side not in ("query", "passage"):
            raise ValueError(f"side must be 'query' or 'passage', got {side!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        from tqdm.auto import tqdm

        out = np.empty((n, self.dim), dtype=np.float32)
        use_amp = amp and self.device.type == "cuda"
        amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
        # Token ids are held as Python lists, so tokenise a chunk at a time (sorting within the chunk)
        # rather than a whole corpus shard at once.
        chunk = max(batch_size, (self.chunk_size // batch_size) * batch_size)
        if max_tokens is None:
            max_tokens = self.cpu_max_tokens if self.device.type == "cpu" else 0
        was_training = self.model.training
        self.model.eval()
        try:
            with (
                torch.inference_mode(),
                torch.autocast(self.device.type, dtype=amp_dtype, enabled=use_amp),
                tqdm(total=n, desc=f"encode {side}s", unit=side, disable=not show_progress) as bar,
            ):
                for c0 in range(0, n, chunk):
                    enc = self.tokenizer(
                        self.with_prefix(texts[c0 : c0 + chunk], side),
                        truncation=True,
                        max_length=self.settings.max_len(side),
                        padding=False,
                    )
                    features = {k: v for k, v in enc.items() if k in _MODEL_INPUTS}
                    ids = features["input_ids"]
                    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
                    order = np.argsort(-lengths, kind="stable")
                    for start, stop in _batches(lengths[order], batch_size, max_tokens):
                        idx = order[start:stop]
                        width = int(lengths[idx[0]])
                        batch = {
                            k: _pad_rows([v[i] for i in idx], width, self._pad_value(k)).to(self.device)
                            for k, v in features.items()
                        }
                        out[c0 + idx] = self.embed(batch).float().cpu().numpy()
                        bar.update(len(idx))
        finally:
            self.model.train(was_training)
        return out

    def _pad_value(self, key: str) -> int:
        return int(self.tokenizer.pad_token_id) if key == "input_ids" else 0

    def encode_queries(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False, max_tokens: int | None = None
    ) -> np.ndarray:
        return self.encode(texts, "query", batch_size=batch_size, show_progress=show_progress, max_tokens=max_tokens)

    def encode_passages(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False, max_tokens: int | None = None
    ) -> np.ndarray:
        return self.encode(texts, "passage", batch_size=batch_size, show_progress=show_progress, max_tokens=max_tokens)

    # -- saving

    def save(self, directory: str | os.PathLike) -> None:
        """Save weights (safetensors), tokenizer, ``boostmdr_encoder.json`` and a sentence-transformers
        description of the same pooling, so the directory loads with ``AutoModel``, with
        :meth:`from_pretrained` and with ``sentence_transformers.SentenceTransformer``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        self.settings.save(directory)
        write_sentence_transformers_config(directory, self.settings, self.dim)


def _hidden_size(model: torch.nn.Module) -> int:
    config = model.config
    size = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
    if not size:
        raise ValueError(f"cannot tell the hidden size of {type(model).__name__} from its config")
    return int(size)


def _batches(sorted_lengths: np.ndarray, batch_size: int, max_tokens: int | None) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges over texts sorted longest first: at most ``batch_size`` texts each and,
    with ``max_tokens``, at most ``max_tokens`` padded tokens (the first text sets the width)."""
    out = []
    start, n = 0, len(sorted_lengths)
    while start < n:
        size = batch_size
        if max_tokens:
            size = max(1, min(batch_size, max_tokens // max(1, int(sorted_lengths[start]))))
        out.append((start, min(n, start + size)))
        start += size
    return out


def _pad_rows(rows: Sequence[Sequence[int]], width: int, value: int) -> torch.Tensor:
    """Right-pad integer rows to ``width`` into one ``long`` tensor."""
    arr = np.full((len(rows), width), value, dtype=np.int64)
    for i, row in enumerate(rows):
        arr[i, : len(row)] = row
    return torch.from_numpy(arr)


def write_sentence_transformers_config(directory: str | os.PathLike, settings: EncoderSettings, dim: int) -> None:
    """Describe the encoder to sentence-transformers (Transformer -> Pooling -> optional Normalize)."""
    from boostmdr.formats import write_json

    directory = Path(directory)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if settings.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (directory / "2_Normalize").mkdir(exist_ok=True)
    write_json(directory / "modules.json", modules)
    write_json(
        directory / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": dim,
            "pooling_mode_cls_token": settings.pooling == "cls",
            "pooling_mode_mean_tokens": settings.pooling == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    write_json(directory / "sentence_bert_config.json", {"max_seq_length": settings.p_max_len, "do_lower_case": False})
    write_json(
        directory / "config_sentence_transformers.json",
        {
            "prompts": {"query": settings.query_prefix, "document": settings.passage_prefix},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine" if settings.normalize else "dot",
        },
    )
