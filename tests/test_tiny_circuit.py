"""The tiny judge's token-overlap circuit: markers found from the template, segment values in closed
form, the heads' outputs on real prompts (which tokens are flagged, the count), weights kept through
fine-tuning, and clear errors for templates and models it cannot serve."""

from __future__ import annotations

import contextlib

import pytest
from judge_fixtures import PROMPT, judge_against_truth, write_toy_data

from boostmdr.judge import PLACEHOLDERS, load_judge_template, render_judge_prompt
from boostmdr.llm.prompt import PromptTemplate
from boostmdr.demo.tiny_circuit import (
    COUNT,
    COUNT_MATCH,
    COUNT_SCALE,
    COUNT_SINK,
    FLAG,
    SEG_C,
    SEG_Q,
    STATIC_FROM,
    CircuitError,
    find_markers,
    install_circuit,
    max_rotation,
    segment_values,
)
from boostmdr.demo.tiny_lm import TinyLMSettings, build_model, iter_texts, train_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEMPLATE = load_judge_template(PROMPT)
REORDERED = PromptTemplate(
    "Judge the passage.\nReference: {reference}\nQuery: {question}\nPassage: {candidate}\nAnswer as JSON.", PLACEHOLDERS, "reordered"
)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    data = write_toy_data(tmp_path_factory.mktemp("circuit-data"), n_queries=30)
    return train_tokenizer(iter_texts([data["corpus"]]), 700, [TEMPLATE.text, REORDERED.text])


def circuit_model(tokenizer, template, layers=4, hidden=160):
    settings = TinyLMSettings(vocab_size=700, hidden=hidden, layers=layers, heads=2, intermediate=64, init="circuit")
    model, markers = build_model(tokenizer, settings, template)
    return model.eval(), markers


def residual_after(model, ids, layers=3):
    import torch

    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return out.hidden_states[layers][0]  # the residual stream after that many layers


@pytest.mark.parametrize(
    "order", [("question", "candidate", "reference"), ("reference", "question", "candidate"), ("candidate", "reference", "question")]
)
def test_segment_values_make_running_means_one_hot(order):
    values = segment_values(order)
    for k in range(1, 4):
        mean_q = sum(v[0] for v in values[:k]) / k
        mean_c = sum(v[1] for v in values[:k]) / k
        assert (mean_q, mean_c) == (float(order[k - 1] == "question"), float(order[k - 1] == "candidate"))


def test_markers_are_the_labels_before_each_placeholder(tokenizer):
    m = find_markers(tokenizer, TEMPLATE)
    assert m.placeholders == ("question", "candidate", "reference")
    assert [tokenizer.decode([t]) for t in m.ids] == ["Question", "Candidate", "Standard"]
    r = find_markers(tokenizer, REORDERED)
    assert r.placeholders == ("reference", "question", "candidate")
    assert [tokenizer.decode([t]).strip() for t in r.ids] == ["Reference", "Query", "Passage"]


def test_template_without_a_unique_label_is_refused(tokenizer):
    bare = PromptTemplate("Judge: {question} and {candidate} and {reference} now.", PLACEHOLDERS, "bare.txt")
    with pytest.raises(CircuitError, match=r"bare.txt: .*\{candidate\}.*where the candidate starts.*--init random"):
        find_markers(tokenizer, bare)
    settings = TinyLMSettings(vocab_size=700, hidden=160, layers=3, heads=2, intermediate=64, init="circuit")
    with pytest.raises(CircuitError, match="more than 3 layers"):
        build_model(tokenizer, settings, TEMPLATE)
    with pytest.raises(ValueError, match="--init circuit needs --prompt"):
        build_model(tokenizer, TinyLMSettings(vocab_size=700, hidden=160, layers=4, heads=2, init="circuit"))
    with pytest.raises(ValueError, match="--init 'magic'"):
        TinyLMSettings(init="magic")


def test_rotary_leaves_the_circuit_coordinates_alone(tokenizer):
    """The model's own rotary frequencies: the circuit's pairs turn by under 0.01 rad over the context."""
    model, _ = circuit_model(tokenizer, TEMPLATE)
    inv_freq = model.model.rotary_emb.inv_freq
    assert inv_freq.numel() == 64 and float(inv_freq[0]) == 1.0
    assert float(inv_freq[STATIC_FROM:].max()) * model.config.max_position_embeddings < 0.01
    assert max_rotation(model.config.max_position_embeddings) < 0.01


@pytest.mark.parametrize("template", [TEMPLATE, REORDERED], ids=["paper", "reordered"])
def test_heads_flag_candidate_tokens_found_in_the_question_and_count_them(tokenizer, template):
    model, _ = circuit_model(tokenizer, template)
    question = "kamito rasune lopedi"
    counts = []
    for shared in range(0, 4):
        words = question.split()[:shared] + ["bazufo", "gihawe", "yozuba", "wefogi"] * 3
        candidate = " ".join(words + ["bazufo"])  # repeated words that are not in the question
        text = render_judge_prompt(template, question, candidate, "wesuzu kanemi " * 5)
        ids = tokenizer(text)["input_ids"]
        h = residual_after(model, ids)
        tokens = [tokenizer.decode([t]) for t in ids]
        q_span = "".join(t for t, v in zip(tokens, h[:, SEG_Q]) if v > 0.5)
        c_span = "".join(t for t, v in zip(tokens, h[:, SEG_C]) if v > 0.5)
        assert question in q_span and candidate not in q_span and "wesuzu" not in q_span
        assert candidate in c_span and question + "\n" not in c_span and "wesuzu" not in c_span
        assert ((h[:, SEG_Q] - 0.5).abs() > 0.4).all() and ((h[:, SEG_C] - 0.5).abs() > 0.4).all()
        c_ids = tokenizer(" " + candidate, add_special_tokens=False)["input_ids"]
        q_ids = set(tokenizer(" " + question, add_special_tokens=False)["input_ids"])
        in_c = [i for i in range(len(ids)) if h[i, SEG_C] > 0.5]
        flagged = {ids[i] for i in in_c if h[i, FLAG] > 0.5}
        # every candidate token that occurs in the question is flagged; no other candidate-only token is
        expected = {t for t in c_ids if t in q_ids}
        assert expected <= flagged
        assert not (flagged - expected - {ids[i] for i in in_c if ids[i] in set(ids[: in_c[0]])}), "flag outside the question"
        # COUNT in closed form from layer 3's input: the share of attention that the non-BOS positions
        # get (value 1), scores 10 (SEG_C + FLAG) against the sink's 20 + ln 3, each read through RMSNorm
        x = residual_after(model, ids, 2)
        unit = (x.pow(2).mean(-1) / ((96 + 1) / x.shape[-1])).rsqrt()  # 1 / (RMS relative to a bare token)
        scores = COUNT_MATCH * (x[:, SEG_C] + x[:, FLAG]) * unit * unit[-1]
        scores[0] = COUNT_SINK * unit[0] * unit[-1]
        weights = scores.softmax(0)
        share = (weights[1:] * unit[1:]).sum()  # values: 1 for every token but BOS, read through RMSNorm too
        assert h[-1, COUNT].item() == pytest.approx(COUNT_SCALE * share.item(), rel=1e-3)
        n = sum(1 for i in in_c if h[i, FLAG] > 0.5)  # with 0/1 features that share is n / (n + 3)
        assert h[-1, COUNT].item() == pytest.approx(COUNT_SCALE * n / (n + 3), rel=0.25)
        counts.append(h[-1, COUNT].item())
    assert counts == sorted(counts) and counts[-1] - counts[0] > 1.0


def test_embeddings_and_circuit_layers_stay_fixed_while_the_rest_trains(tokenizer):
    import torch

    model, _ = circuit_model(tokenizer, TEMPLATE)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.1)
    model.train()
    ids = torch.tensor([tokenizer(render_judge_prompt(TEMPLATE, "kami", "tosu", "rane"))["input_ids"]])
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    for n, p in model.named_parameters():
        fixed = n.startswith(("model.embed_tokens.", "model.layers.0.", "model.layers.1.", "model.layers.2."))
        assert torch.equal(p, before[n]) == fixed, n
    assert not model.config.tie_word_embeddings


def test_skipping_the_zero_mlps_changes_no_output_and_no_training_step(tokenizer):
    """The fine-tuning skips the circuit layers' all-zero MLPs: every hidden state and logit is bit for bit the same,
    and so is the model after two AdamW steps; the real MLPs are back afterwards, and a non-zero MLP is kept."""
    import torch

    from boostmdr.demo.tiny_circuit import zero_mlps_skipped

    ids = torch.tensor([tokenizer(render_judge_prompt(TEMPLATE, "kami tosu", "tosu rane", "rane"))["input_ids"]] * 2)
    trained = []
    for skip in (False, True):
        model, _ = circuit_model(tokenizer, TEMPLATE)
        mlps = [layer.mlp for layer in model.model.layers]
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.01)
        model.train()
        with zero_mlps_skipped(model) if skip else contextlib.nullcontext() as active:
            if skip:
                assert len(active.saved) == 3 and all(layer.mlp is not m for layer, m in zip(model.model.layers[:3], mlps))
            for _ in range(2):
                out = model(input_ids=ids, labels=ids, output_hidden_states=True)
                out.loss.backward()
                opt.step()
                opt.zero_grad()
        assert [layer.mlp for layer in model.model.layers] == mlps  # restored
        trained.append((out.hidden_states, out.logits.detach(), model.state_dict()))
    (h0, l0, w0), (h1, l1, w1) = trained
    assert all(torch.equal(a, b) for a, b in zip(h0, h1)) and torch.equal(l0, l1)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    # an MLP that is not all zero (here the first layer's, changed by hand) is computed as it is
    model, _ = circuit_model(tokenizer, TEMPLATE)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = 1.0
    with zero_mlps_skipped(model) as active:
        assert [layer for layer, _ in active.saved] == list(model.model.layers[1:3])


@pytest.mark.slow
def test_circuit_judge_trained_on_labels_finds_planted_false_negatives(tmp_path):
    """End to end on unseen queries: build with the circuit, fine-tune on one toy world's training labels,
    judge another world's candidates with the real judge (four samples, majority vote). A planted false
    negative repeats its query's words; precision and recall must beat a judge that removes candidates
    at random (precision = base rate, recall = elimination rate)."""
    from boostmdr.demo.tiny_lm import JudgeTrainSettings, build_tiny_lm

    train = write_toy_data(tmp_path / "train", n_queries=60, seed=1)
    held = write_toy_data(tmp_path / "held", n_queries=16, n_candidates=6, seed=2)
    model = tmp_path / "circuit-judge"
    info = build_tiny_lm(
        [train["corpus"], held["corpus"]], model,
        TinyLMSettings(vocab_size=900, hidden=128, layers=4, heads=2, intermediate=128, init="circuit"),
        prompt=PROMPT, train_dirs=[train["train"]],
        train_settings=JudgeTrainSettings(max_steps=150, batch_size=8, lr=1e-3, seed=0),
    )
    assert info["circuit"]["markers"] == {"question": "Question", "candidate": "Candidate", "reference": "Standard"}
    stats = judge_against_truth(model, held, tmp_path / "verdicts.jsonl")
    t = stats["truth"]
    base_rate = t["false_negative_rate_among_candidates"]
    assert stats["null_verdicts"] <= 3  # 150 steps: a few samples still miss the format
    assert base_rate == pytest.approx(8 / 96, abs=0.01)  # 8 planted among 96, over the parsed verdicts
    assert t["precision"] is not None and t["precision"] > 3 * base_rate, t
    assert t["recall"] >= 0.5 and t["recall"] > stats["elimination_rate"] + 0.3, (t, stats["elimination_rate"])
