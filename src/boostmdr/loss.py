"""The contrastive loss of dense-retriever fine-tuning, as a pure function of embeddings.

Every training path (one process, several processes under ``torchrun``) calls :func:`contrastive_loss`
on the embeddings of the whole (global) batch. A batch of ``B`` queries comes with ``B * G`` passages laid
out in groups: passages ``i*G ... i*G + G-1`` belong to query ``i``, the first of them is its positive, the
rest its hard negatives, and every other query's passages are in-batch negatives for query ``i``.

With per-negative weights ``w_ij`` (stage 3 of the paper, Sec. 3.5) the loss of query ``i`` is

    L_i = -log( e^{s_i+} / (e^{s_i+} + sum_j w_ij e^{s_ij}) ),     s = sim(q, p) / temperature

which is computed stably as cross-entropy over the logits ``s_ij + log w_ij`` (the positive's weight is 1).
With every weight 1 it is exactly InfoNCE, i.e. ``F.cross_entropy(s, targets)``; a weight of 0 removes a
negative from the denominator. Optional ``query_weights`` scale whole per-query terms instead, and an
optional ``batch_scale`` the whole batch loss; all default to none.

Stage 3 gives every hard-negative slot ``k`` of query ``i`` a weight ``omega_ik`` (:mod:`boostmdr.batching`).
:func:`hard_negative_weighting` turns them into one of three losses (``--loss-weighting``):

* ``paper`` (default): the paper's ``L_final = 1/|B| sum_{(q, d+, d-) in B} omega(d-) x L_MR(q)`` over the
  batch's triplets, each query contributing one triplet per hard negative. With ``|B|`` the number of
  triplets, ``B (G-1)``, this is ``(1/B) sum_i mean_k(omega_ik) L_i``: per-query weights equal to the mean
  weight of the query's hard negatives (``L_MR`` keeps all in-batch negatives in its denominator);
* ``authors``: the released code's ``loss * omega.mean()``: plain InfoNCE of the batch times the batch's
  mean weight, ``mean_i(L_i) x mean_ik(omega_ik)``;
* ``softmax``: the weights inside the denominator as above, per passage: a hard negative weighs its own
  ``omega_ik`` in every row where it is a negative, and a query's positive, as an in-batch negative of the
  other queries, weighs the mean weight of its group's hard negatives.

With every weight 1 all three are plain InfoNCE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from boostmdr.train_config import LOSS_WEIGHTINGS, SIMILARITIES

Similarity = Literal["cos", "dot"]


@dataclass(frozen=True)
class LossOutput:
    """The batch loss plus what is worth logging: per-query terms, logits and in-batch accuracy."""

    loss: Tensor  # scalar
    per_query: Tensor  # [B]
    logits: Tensor  # [B, B*G]: similarity / temperature + log(weight)
    accuracy: Tensor  # scalar: fraction of queries whose positive has the highest logit


def similarity_scores(q: Tensor, p: Tensor, similarity: Similarity = "cos") -> Tensor:
    """``[B, d] x [N, d] -> [B, N]`` cosine similarity (vectors normalised here) or dot product."""
    if similarity == "cos":
        q = F.normalize(q, p=2, dim=-1)
        p = F.normalize(p, p=2, dim=-1)
    elif similarity != "dot":
        raise ValueError(f"unknown similarity {similarity!r}; choose one of {SIMILARITIES}")
    return q @ p.transpose(0, 1)


def positive_targets(num_queries: int, group_size: int, device: torch.device | None = None) -> Tensor:
    """Column of each query's positive: query ``i`` owns passages ``i*G .. i*G+G-1``, the first positive."""
    return torch.arange(num_queries, device=device) * group_size


def _log_weights(weights: Tensor, num_queries: int, num_passages: int, targets: Tensor, dtype: torch.dtype) -> Tensor:
    """Per-pair log-weights ``[B, N]`` with the positives' entries forced to 0 (weight 1)."""
    if weights.dim() == 1:
        if weights.shape[0] != num_passages:
            raise ValueError(f"per-passage weights must have {num_passages} entries (B*G), got {weights.shape[0]}")
        weights = weights.unsqueeze(0).expand(num_queries, num_passages)
    elif weights.dim() == 2:
        if tuple(weights.shape) != (num_queries, num_passages):
            raise ValueError(
                f"per-pair weights must have shape [B, B*G] = [{num_queries}, {num_passages}], got {list(weights.shape)}"
            )
    else:
        raise ValueError(f"weights must be per passage [B*G] or per pair [B, B*G], got shape {list(weights.shape)}")
    if torch.isnan(weights).any() or (weights < 0).any():
        raise ValueError("negative weights must be finite and >= 0 (0 removes a negative)")
    log_w = torch.log(weights.detach().to(dtype)).clone()
    log_w[torch.arange(num_queries, device=targets.device), targets] = 0.0
    return log_w


def contrastive_loss(
    q: Tensor,
    p: Tensor,
    group_size: int,
    temperature: float,
    weights: Tensor | None = None,
    similarity: Similarity = "cos",
    query_weights: Tensor | None = None,
    batch_scale: Tensor | None = None,
) -> LossOutput:
    """Group-wise InfoNCE with in-batch negatives and optional per-negative weights.

    Args:
        q: query embeddings ``[B, d]``.
        p: passage embeddings ``[B*G, d]``; query ``i``'s positive is row ``i*G``, its hard negatives follow.
        group_size: ``G`` (1 positive + ``G-1`` hard negatives).
        temperature: the similarity is divided by it (``scale = 1 / temperature`` in sentence-transformers).
        weights: ``w`` inside the softmax denominator, per passage ``[B*G]`` (passage ``k`` weighs the same in
            every row where it is a negative) or per pair ``[B, B*G]``. Entries at a query's own positive are
            ignored (that weight is 1). ``None`` means all ones.
        similarity: ``"cos"`` (embeddings normalised here) or ``"dot"``.
        query_weights: optional ``[B]`` multipliers of the per-query terms; the loss is ``mean(w_i * L_i)``.
        batch_scale: optional scalar multiplier of the batch loss (no gradient flows into it).

    Returns:
        :class:`LossOutput`; ``loss`` is the mean over queries.
    """
    if q.dim() != 2 or p.dim() != 2 or q.shape[1] != p.shape[1]:
        raise ValueError(f"expected q [B, d] and p [B*G, d], got {list(q.shape)} and {list(p.shape)}")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    num_queries, num_passages = q.shape[0], p.shape[0]
    if num_passages != num_queries * group_size:
        raise ValueError(
            f"{num_queries} queries with group size {group_size} need {num_queries * group_size} passages, got {num_passages}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")

    # Scores in float32 even under autocast: the softmax over B*G logits is where half precision hurts.
    dtype = torch.promote_types(q.dtype, torch.float32)
    logits = similarity_scores(q.to(dtype), p.to(dtype), similarity) / temperature
    targets = positive_targets(num_queries, group_size, device=q.device)
    if weights is not None:
        logits = logits + _log_weights(weights.to(q.device), num_queries, num_passages, targets, logits.dtype)
    per_query = F.cross_entropy(logits, targets, reduction="none")
    if query_weights is not None:
        if tuple(query_weights.shape) != (num_queries,):
            raise ValueError(f"query_weights must have shape [B] = [{num_queries}], got {list(query_weights.shape)}")
        loss = (per_query * query_weights.detach().to(per_query)).mean()
    else:
        loss = F.cross_entropy(logits, targets)  # bit-identical to plain InfoNCE (mean of per_query up to rounding)
    if batch_scale is not None:
        if batch_scale.numel() != 1:
            raise ValueError(f"batch_scale must be a scalar, got shape {list(batch_scale.shape)}")
        loss = loss * batch_scale.detach().to(loss).reshape(())
    with torch.no_grad():
        accuracy = (logits.argmax(dim=1) == targets).float().mean()
    return LossOutput(loss=loss, per_query=per_query, logits=logits, accuracy=accuracy)



def hard_negative_weighting(hard_negatives: Tensor, weighting: str = "paper") -> dict[str, Tensor]:
    """The :func:`contrastive_loss` keyword arguments of one weighting of the hard-negative weights.

    Args:
        hard_negatives: ``[B, G-1]``: the weight of each hard-negative slot of each query's group.
        weighting: ``paper``, ``authors`` or ``softmax`` (module docstring).
    """
    if weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {weighting!r}; choose one of {LOSS_WEIGHTINGS}")
    if hard_negatives.dim() != 2 or hard_negatives.shape[1] < 1:
        raise ValueError(f"hard-negative weights must have shape [B, G-1], got {list(hard_negatives.shape)}")
    if torch.isnan(hard_negatives).any() or (hard_negatives < 0).any():
        raise ValueError("hard-negative weights must be finite and >= 0")
    per_query = hard_negatives.mean(dim=1)
    if weighting == "paper":
        return {"query_weights": per_query}
    if weighting == "authors":
        return {"batch_scale": hard_negatives.mean()}
    return {"weights": torch.cat([per_query.unsqueeze(1), hard_negatives], dim=1).reshape(-1)}


# ------------------------------------------------------------------------------------ distributed


def gather_with_local_grad(t: Tensor) -> Tensor:
    """All-gather ``t`` along dim 0 across processes, keeping the autograd graph of the local shard.

    ``all_gather`` returns detached copies; putting this rank's own tensor back in its slot lets gradients
    reach the local encoder through every row and column it contributes to. Each rank then computes the loss
    of the whole global batch; as only the local shard carries gradient, rank ``r``'s backward yields the
    part of the global gradient that flows through its own inputs, and summing over ranks gives the full
    gradient. DDP averages instead of summing, which the trainer undoes by scaling the loss by the world size
    (see :func:`distributed_loss_scale`). Every rank must pass a tensor of the same shape.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    shards = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(shards, t.contiguous())
    shards[dist.get_rank()] = t
    return torch.cat(shards, dim=0)


def distributed_loss_scale() -> int:
    """Factor the backward loss is multiplied by so DDP's gradient average equals the one-process gradient."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1
