"""A token-overlap circuit set into the tiny judge's first three attention layers at initialisation.

Why: a randomly initialised tiny LM does not learn to compare tokens across a 400-token judge prompt in
a CPU budget (measured; see :mod:`boostmdr.demo.tiny_lm`), so trained on the labels alone it judges at
chance. A pretrained LLM brings that skill with it. The tiny judge gets it here instead, as weights:
three attention heads that together compute, at every position after the candidate, how many
candidate tokens also occur in the question. Everything else (the answer format, the decision
threshold, how much the count matters) is left to the fine-tuning on the training labels, which trains
the later layers and the (untied) output projection and keeps the embeddings and the first three layers
fixed. The model is an ordinary ``LlamaForCausalLM``; nothing in the judge's code path
knows about the circuit.

The residual stream (``hidden`` >= 128) is laid out as:

* ``E`` (dims 0-95): a random +-1 code per token, so two tokens' codes have dot product 96 when
  equal and about N(0, 96) otherwise;
* ``ONE`` (96): 1 for every token; ``BOS`` (97): set for the begin-of-sequence token only;
* ``MARK`` (98-100): set for the three marker tokens, one per placeholder: the last template token
  before each placeholder that occurs exactly once in the template ("Question", "Candidate",
  "Standard" in the paper's prompt);
* written by the heads: ``SEG_Q`` (101) and ``SEG_C`` (102), 1 inside the question and the candidate;
  ``FLAG`` (103), 1 where the token also occurs in the question; ``COUNT`` (104);
* dims 105 and up: zero in the embeddings, for the later layers to use.

Layer 1, head 0 (segments): every position attends to the markers seen so far (the begin-of-sequence
token absorbs the attention before the first); the markers' values are chosen so that the average is
``SEG_Q`` = 1 from the question's marker to the next marker, ``SEG_C`` = 1 from the candidate's marker to
the next, and 0 elsewhere, whatever the placeholders' order in the template.
Layer 2, head 0 (question match): a position attends to earlier positions holding the same token
(score 24 for equal codes) inside the question (score +24), with the begin-of-sequence token as a sink
at 36: only a same-token position in the question clears the sink, so ``FLAG`` is about 1 for a
candidate token that occurs in the question and about 0 otherwise. Layer 3, head 0 (count): attends
to candidate positions with ``FLAG`` set (20), against the sink at 20 + ln 3, so ``COUNT`` =
4 n / (n + 3) for n matching candidate tokens. Scores are set in the attention's scaled units,
after RMSNorm (whose weights are fixed at 1 for these layers). The three heads use only head
coordinates whose rotary frequency is below 1e-5 (``rope_theta`` 1e30, head dimension 128), so the
rotary embedding leaves them unchanged over the whole context.

The first three layers' MLPs are zero. Those layers and the input embeddings are frozen
(``requires_grad`` off): a change to them would change the RMS every score above is set against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from boostmdr.llm.prompt import PromptTemplate

E_DIM = 96
ONE, BOS, MARK0, SEG_Q, SEG_C, FLAG, COUNT = 96, 97, 98, 101, 102, 103, 104
FIRST_FREE = 105
HEAD_DIM = 128
ROPE_THETA = 1e30
STATIC_FROM = 11  # rotary pairs 11..63 turn by less than 1e-5 rad per position at theta 1e30
CIRCUIT_LAYERS = 3
MIN_HIDDEN = 128

# Attention scores (after the 1/sqrt(head_dim) scaling).
SEGMENT_MARKER, SEGMENT_SINK = 20.0, 15.0
MATCH_SAME, MATCH_IN_QUESTION, MATCH_SINK = 24.0, 24.0, 36.0
COUNT_MATCH, COUNT_SINK = 10.0, 20.0 + math.log(3.0)
COUNT_SCALE = 4.0


class CircuitError(ValueError):
    pass


def static_coordinates() -> list[int]:
    """Head coordinates left unrotated: Llama pairs coordinate j with j + head_dim / 2."""
    half = HEAD_DIM // 2
    return list(range(STATIC_FROM, half)) + list(range(half + STATIC_FROM, HEAD_DIM))


def max_rotation(max_positions: int) -> float:
    """The largest angle (radians) a static coordinate turns by over ``max_positions`` positions."""
    half = HEAD_DIM // 2
    return max_positions * ROPE_THETA ** (-STATIC_FROM / half)


@dataclass(frozen=True)
class Markers:
    """Marker token ids in the template's placeholder order, and which placeholder each one opens."""

    ids: tuple[int, ...]
    placeholders: tuple[str, ...]


def template_pieces(template: PromptTemplate) -> tuple[list[str], list[str]]:
    """The literal texts around the placeholders (one more than the placeholders) and the placeholder
    names, in the template's order."""
    parts = template.pattern.split(template.text)
    return parts[0::2], parts[1::2]


def find_markers(tokenizer: Any, template: PromptTemplate) -> Markers:
    """For each placeholder, the last token of the template text before it that occurs once in the template."""
    texts, names = template_pieces(template)
    tokens = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    counts: dict[int, int] = {}
    for seq in tokens:
        for t in seq:
            counts[t] = counts.get(t, 0) + 1
    ids = []
    for k, name in enumerate(names):
        unique = [t for t in tokens[k] if counts[t] == 1 and t not in ids]
        if not unique:
            raise CircuitError(
                f"{template.source}: no token between the previous placeholder and {{{name}}} occurs only once "
                f"in the template, so the tiny judge's circuit cannot find where the {name} starts; add a label "
                "such as 'Question:' before it, or build the tiny LM with --init random"
            )
        ids.append(unique[-1])
    return Markers(tuple(ids), tuple(names))


def check_markers(markers: Markers, prompts: Sequence[Sequence[int]]) -> None:
    """Each marker must occur exactly once in each rendered prompt (it could also occur in a passage)."""
    for ids in prompts:
        for m, name in zip(markers.ids, markers.placeholders):
            n = sum(1 for t in ids if t == m)
            if n != 1:
                raise CircuitError(
                    f"the marker token {m} of {{{name}}} occurs {n} times in a rendered judge prompt; "
                    "the circuit needs it exactly once"
                )


def segment_values(placeholders: Sequence[str]) -> list[tuple[float, float]]:
    """(SEG_Q, SEG_C) value of each marker so that the running mean over the markers seen is the one-hot
    of the span being read: v_k = k target_k - (k - 1) target_(k-1)."""
    target = [(float(p == "question"), float(p == "candidate")) for p in placeholders]
    out, prev = [], (0.0, 0.0)
    for k, t in enumerate(target, start=1):
        out.append((k * t[0] - (k - 1) * prev[0], k * t[1] - (k - 1) * prev[1]))
        prev = t
    return out


def circuit_config_overrides() -> dict[str, Any]:
    # Untied: the input embeddings are fixed codes, the output projection learns.
    return {"head_dim": HEAD_DIM, "rope_theta": ROPE_THETA, "tie_word_embeddings": False}


def install_circuit(model: Any, tokenizer: Any, template: PromptTemplate, seed: int = 0) -> Markers:
    """Write the circuit into ``model`` (built with :func:`circuit_config_overrides`) and freeze the input
    embeddings and the first three layers (``requires_grad`` off); returns the markers."""
    import torch

    cfg = model.config
    if cfg.hidden_size < MIN_HIDDEN or cfg.num_hidden_layers <= CIRCUIT_LAYERS:
        raise CircuitError(
            f"the tiny judge's circuit needs --hidden >= {MIN_HIDDEN} and more than {CIRCUIT_LAYERS} layers "
            f"(got hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers)"
        )
    if getattr(cfg, "head_dim", None) != HEAD_DIM:
        raise CircuitError(f"the circuit needs head_dim {HEAD_DIM}; build the model with circuit_config_overrides()")
    if max_rotation(cfg.max_position_embeddings) > 0.05:
        raise CircuitError("rope_theta too small for the circuit's unrotated coordinates")
    markers = find_markers(tokenizer, template)
    H, hd = cfg.hidden_size, HEAD_DIM
    static = static_coordinates()
    scale = math.sqrt(hd)
    rms = math.sqrt((E_DIM + 1) / H)  # every token's embedding has this RMS (markers barely more)
    gen = torch.Generator().manual_seed(seed)

    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        V = emb.shape[0]
        emb.zero_()
        emb[:, :E_DIM] = torch.randint(0, 2, (V, E_DIM), generator=gen).float() * 2 - 1
        emb[:, ONE] = 1.0
        bos = tokenizer.bos_token_id
        emb[bos, :E_DIM] = 0.0
        emb[bos, BOS] = math.sqrt(E_DIM)  # the same RMS as every other token
        for k, m in enumerate(markers.ids):
            emb[m, MARK0 + k] = 1.0
        bos_unit = rms / math.sqrt(E_DIM)  # reads the BOS dim as 1 after RMSNorm

        def zero_layer(layer: Any) -> Any:
            """All of the layer's weights zero (its MLP adds nothing), its norms' weights 1."""
            for name, param in layer.named_parameters():
                param.fill_(1.0 if name.endswith("layernorm.weight") else 0.0)
            return layer.self_attn

        layers = model.model.layers
        # Layer 1: segments.
        att = zero_layer(layers[0])
        q0 = static[0]
        att.q_proj.weight[q0, ONE] = SEGMENT_MARKER * scale * rms
        for k, m in enumerate(markers.ids):
            att.k_proj.weight[q0, MARK0 + k] = rms
        att.k_proj.weight[q0, BOS] = (SEGMENT_SINK / SEGMENT_MARKER) * bos_unit
        for k, (vq, vc) in enumerate(segment_values(markers.placeholders)):
            att.v_proj.weight[0, MARK0 + k] = vq * rms
            att.v_proj.weight[1, MARK0 + k] = vc * rms
        att.o_proj.weight[SEG_Q, 0] = 1.0
        att.o_proj.weight[SEG_C, 1] = 1.0

        # Layer 2: candidate token also in the question.
        att = zero_layer(layers[1])
        g = math.sqrt(MATCH_SAME * scale / E_DIM)
        for i in range(E_DIM):
            att.q_proj.weight[static[i], i] = g * rms
            att.k_proj.weight[static[i], i] = g * rms
        att.q_proj.weight[static[E_DIM], ONE] = MATCH_IN_QUESTION * scale * rms
        att.k_proj.weight[static[E_DIM], SEG_Q] = rms
        att.q_proj.weight[static[E_DIM + 1], ONE] = MATCH_SINK * scale * rms
        att.k_proj.weight[static[E_DIM + 1], BOS] = bos_unit
        att.v_proj.weight[0, ONE] = rms
        att.v_proj.weight[0, BOS] = -bos_unit
        att.o_proj.weight[FLAG, 0] = 1.0

        # Layer 3: how many candidate tokens are flagged.
        att = zero_layer(layers[2])
        att.q_proj.weight[q0, ONE] = scale * rms
        att.k_proj.weight[q0, SEG_C] = COUNT_MATCH * rms
        att.k_proj.weight[q0, FLAG] = COUNT_MATCH * rms
        att.k_proj.weight[q0, BOS] = COUNT_SINK * bos_unit
        att.v_proj.weight[0, ONE] = rms
        att.v_proj.weight[0, BOS] = -bos_unit
        att.o_proj.weight[COUNT, 0] = COUNT_SCALE

    # Fixed: a trained input embedding or early layer would change the RMS every score is set against.
    model.get_input_embeddings().weight.requires_grad_(False)
    for layer in model.model.layers[:CIRCUIT_LAYERS]:
        layer.requires_grad_(False)
    return markers


class zero_mlps_skipped:
    """While active, the circuit layers' MLPs, whose weights are all zero and frozen (``install_circuit``), are
    replaced by a module that returns 0 without computing them: each layer's output is bit for bit the same (its
    residual plus an exact 0), and so is the fine-tuning, which trains the layers after the circuit. It saves the
    three frozen MLPs' forward passes (measured on the demo's judge, hidden 256: about 15% less time per step). The real
    modules are put back on exit, so the saved model is the ordinary Llama. An MLP with a non-zero or trainable
    weight is left as it is."""

    def __init__(self, model: Any):
        self.model = model
        self.saved: list[tuple[Any, Any]] = []

    def __enter__(self) -> "zero_mlps_skipped":
        from boostmdr.llm.transformers_backend import skip_zero_mlps

        self.saved = skip_zero_mlps(self.model, layers=CIRCUIT_LAYERS, frozen_only=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        for layer, mlp in self.saved:
            layer.mlp = mlp
        self.saved.clear()
