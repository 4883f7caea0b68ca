"""The tiny local causal LM: standard Hugging Face layout, a tokenizer that handles scores and JSON,
judge fine-tuning from training labels only, and a trained judge that beats chance on unseen queries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from judge_fixtures import (
    PROMPT,
    REPO,
    hide_second_positives,
    judge_against_truth,
    random_tiny_lm,
    trained_topic_judge,
    write_topic_world,
)

from boostmdr.formats import read_jsonl
from boostmdr.judge import format_scores, load_judge_template, render_judge_prompt
from boostmdr.demo.tiny_lm import JudgeExamples, JudgeTrainSettings, answer_loss, read_labelled


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def random_lm(tmp_path_factory):
    return random_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


def test_saved_in_hugging_face_layout_and_loadable(random_lm):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (random_lm / name).is_file(), name
    model = AutoModelForCausalLM.from_pretrained(random_lm)
    tok = AutoTokenizer.from_pretrained(random_lm)
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 2
    assert model.config.max_position_embeddings == 1024
    gen = GenerationConfig.from_pretrained(random_lm)
    assert gen.do_sample is True and gen.eos_token_id == tok.eos_token_id  # servers honour temperature/top_p
    summary = json.loads((random_lm / "boostmdr_tiny_lm.json").read_text())
    assert summary["model"]["hidden"] == 32 and "judge_finetuning" not in summary


def test_tokenizer_splits_digits_and_round_trips_the_answer(random_lm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(random_lm)
    answer = format_scores(2, 1)
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == answer
    assert [tok.decode([i]) for i in tok("2012", add_special_tokens=False)["input_ids"]] == ["2", "0", "1", "2"]
    assert tok("x")["input_ids"][0] == tok.bos_token_id
    # the whole judge prompt, with two 48-word passages, fits the context with room to answer
    text = render_judge_prompt(load_judge_template(PROMPT), "ka mi to", " ".join(["kami"] * 60), " ".join(["tosu"] * 60), 48)
    assert len(tok(text)["input_ids"]) + 64 < 1024


def test_judge_examples_are_balanced_and_come_from_the_labels(tmp_path, random_lm):
    from transformers import AutoTokenizer

    world = write_topic_world(tmp_path / "w", 10, seed=3)
    queries, texts = read_labelled(world)
    tok = AutoTokenizer.from_pretrained(random_lm)
    s = JudgeTrainSettings(empty_reference_fraction=0.0, random_negative_fraction=0.0)
    stream = JudgeExamples(tok, load_judge_template(PROMPT), [(queries, texts)], s)
    by_query = {q.query: q for q in queries}
    batch = stream.batch(8)
    for i, (prompt_ids, answer_ids) in enumerate(batch):
        relevant = i % 2 == 0
        assert tok.decode(answer_ids, skip_special_tokens=True) == format_scores(*(2, 2) if relevant else (0, 0))
        prompt = tok.decode(prompt_ids, skip_special_tokens=True)
        question = prompt.split("Question: ")[1].split("\n")[0]
        candidate = prompt.split("Candidate Answer: ")[1].split("\n")[0]
        reference = prompt.split("Standard Answer: ")[1].split("\n")[0]
        q = by_query[question]
        assert reference in {texts[p] for p in q.positives}
        pool = q.positives if relevant else q.negatives
        assert candidate in {texts[d] for d in pool} and candidate != reference


def test_labels_come_from_a_prepared_data_directory(tmp_path):
    world = write_topic_world(tmp_path / "w", 3, seed=6)
    by_dir, by_file = read_labelled(world), read_labelled(world / "train.jsonl")
    assert by_dir == by_file and len(by_dir[0]) == 3
    with pytest.raises(FileNotFoundError, match="prepared-data directory with train.jsonl"):
        read_labelled(tmp_path)


def test_held_out_queries_never_reach_the_fine_tuning(tmp_path):
    from boostmdr.formats import write_topics

    world = write_topic_world(tmp_path / "w", 6, seed=6)
    write_topics(tmp_path / "held.tsv", {"1": "x", "4": "y"})
    queries, _ = read_labelled(world, tmp_path / "held.tsv")
    assert [q.qid for q in queries] == ["0", "2", "3", "5"]
    write_topics(tmp_path / "bad.tsv", {"99": "x"})
    with pytest.raises(FileNotFoundError, match=r"--holdout .*bad\.tsv: 1 queries are not in"):
        read_labelled(world, tmp_path / "bad.tsv")


def test_listwise_examples_answer_with_the_numbers_of_the_other_positives(tmp_path, random_lm):
    from transformers import AutoTokenizer

    from boostmdr.listwise import load_listwise_template, parse_listwise

    world = write_topic_world(tmp_path / "w", 10, seed=3)
    queries, texts = read_labelled(world)
    tok = AutoTokenizer.from_pretrained(random_lm)
    s = JudgeTrainSettings(empty_reference_fraction=0.0, random_negative_fraction=0.0, listwise_window=4)
    listwise = load_listwise_template(REPO / "config/prompts/judge_listwise.txt")
    stream = JudgeExamples(tok, load_judge_template(PROMPT), [(queries, texts)], s, listwise)
    pointwise_before = JudgeExamples(tok, load_judge_template(PROMPT), [(queries, texts)], s).batch(4)
    by_query = {q.query: q for q in queries}
    seen_relevant = 0
    for _ in range(12):
        prompt_ids, answer_ids = stream.listwise()
        prompt = tok.decode(prompt_ids, skip_special_tokens=True)
        q = by_query[prompt.split("Question: ")[1].split("\n")[0]]
        lines = prompt.split("Candidates:\n")[1].split("\n\n")[0].split("\n")
        cands = [line.split("] ", 1)[1] for line in lines]
        listed = parse_listwise(tok.decode(answer_ids, skip_special_tokens=True), len(cands))
        positives = {texts[p] for p in q.positives}
        assert listed == {i for i, c in enumerate(cands, start=1) if c in positives}
        assert all(c in positives | {texts[n] for n in q.negatives} for c in cands)
        seen_relevant += len(listed)
    assert seen_relevant > 0
    # listwise examples draw from their own random stream: the pointwise examples are unchanged
    assert stream.batch(4) == pointwise_before


def test_shared_prefix_loss_equals_the_plain_forward(random_lm, tmp_path):
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    world = write_topic_world(tmp_path / "w", 6, seed=4)
    tok = AutoTokenizer.from_pretrained(random_lm)
    model = AutoModelForCausalLM.from_pretrained(random_lm)
    stream = JudgeExamples(tok, load_judge_template(PROMPT), [read_labelled(world)], JudgeTrainSettings())
    batch = stream.batch(4)
    loss, lm_loss, verdict_loss = answer_loss(model, batch, tok.pad_token_id)
    assert lm_loss.item() == 0.0 and verdict_loss.isnan()
    with torch.no_grad():
        terms, is_verdict = [], []
        for p, a in batch:
            logits = model(input_ids=torch.tensor([p + a])).logits[0]
            terms += [F.cross_entropy(logits[len(p) - 1 + j][None], torch.tensor([a[j]])) for j in range(len(a))]
            is_verdict += [t in stream.verdict_tokens for t in a]
    terms = torch.stack(terms)
    assert loss.item() == pytest.approx(terms.mean().item(), rel=1e-4)
    # the score digits weighted 4 against 1 for the format tokens: a weighted mean; the verdict loss is theirs alone
    loss, _, verdict_loss = answer_loss(model, batch, tok.pad_token_id, verdict_tokens=stream.verdict_tokens, verdict_weight=4.0)
    w = torch.tensor([4.0 if v else 1.0 for v in is_verdict])
    assert sum(is_verdict) == 2 * len(batch)  # two digits per answer
    assert loss.item() == pytest.approx(((terms * w).sum() / w.sum()).item(), rel=1e-4)
    assert verdict_loss.item() == pytest.approx(terms[torch.tensor(is_verdict)].mean().item(), rel=1e-4)


def test_verdict_tokens_are_the_score_digits(random_lm, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(random_lm)
    world = write_topic_world(tmp_path / "w", 4, seed=4)
    stream = JudgeExamples(tok, load_judge_template(PROMPT), [read_labelled(world)], JudgeTrainSettings())
    assert sorted(tok.decode([t]) for t in stream.verdict_tokens) == ["0", "2"]
    with pytest.raises(ValueError, match=r"--relevant-fraction must be in \(0, 1\), got 1.0"):
        JudgeExamples(tok, load_judge_template(PROMPT), [read_labelled(world)], JudgeTrainSettings(relevant_fraction=1.0))


def test_cli_builds_and_fine_tunes(tmp_path):
    world = write_topic_world(tmp_path / "w", 8, seed=5)
    out = tmp_path / "lm"
    subprocess.run(
        [
            sys.executable, "-m", "boostmdr.demo.tiny_lm", "--tokenizer-corpus", str(world / "corpus.jsonl"),
            "--train", str(world), "--prompt", str(PROMPT), "--out", str(out), "--vocab-size", "500",
            "--hidden", "32", "--heads", "2", "--intermediate", "64", "--max-steps", "3", "--batch-size", "4",
            "--threads", "1", "--log", str(tmp_path / "lm.log"),
        ],
        check=True, capture_output=True, timeout=300,
    )
    info = json.loads((out / "boostmdr_tiny_lm.json").read_text())
    assert info["judge_finetuning"]["steps"] == 3 and info["judge_finetuning"]["data"] == [str(world)]
    # the verdict token's loss is recorded apart from the whole answer's (it is what decides; see answer_loss)
    assert info["judge_finetuning"]["final_verdict_loss"] > 0 and info["judge_finetuning"]["verdict_weight"] == 1.0
    assert "saved tiny LM" in (tmp_path / "lm.log").read_text()


@pytest.mark.slow
def test_trained_tiny_judge_beats_chance_on_unseen_queries(tmp_path_factory):
    """300 steps on 200 labelled queries; then, on 40 queries never seen, (a) the model's preference for
    score 2 over 0 separates a relevant candidate from a rel-0 one, and (b) the full judge (four sampled
    verdicts, majority vote) finds relevant candidates that the labels do not mark, like planted false
    negatives: the second positive of each held-out query is left unlabelled among its candidates.

    Thresholds come from the spread over seeds (model and training seed 0..3, measured at commit 3fdfec5 on
    the 2-core development machine): AUC 0.946-0.971, precision 0.74-1.0 at a base rate of 1/3, recall
    0.725-0.925 against an elimination rate of 0.24-0.42. The same test with the randomly initialised judge
    (init: random) spread from AUC 0.56 to 0.94 over five seeds, which is why it failed on another machine
    (0.672 there, 0.6725 here with seed 0): only the circuit judge is asserted to beat chance."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("tiny-judge")
    model_dir, held = trained_topic_judge(root)
    queries, texts = read_labelled(held)
    template = load_judge_template(PROMPT)

    # (a) score-2 vs score-0 preference at the first score token
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    pre = tok('{"Information Accuracy": ', add_special_tokens=False)["input_ids"]
    two, zero = (tok(f'{{"Information Accuracy": {d}', add_special_tokens=False)["input_ids"][len(pre)] for d in (2, 0))
    pos, neg = [], []
    with torch.no_grad():
        for q in queries:
            for cand, bucket in [(q.positives[1], pos), (q.negatives[0], neg)]:
                ids = tok(render_judge_prompt(template, q.query, texts[cand], texts[q.positives[0]], 48))["input_ids"]
                logits = model(input_ids=torch.tensor([ids + pre]), logits_to_keep=1).logits[0, -1]
                bucket.append(float(logits[two] - logits[zero]))
    auc = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))
    assert auc > 0.85, f"AUC {auc:.3f} on {len(pos)}+{len(neg)} held-out pairs (chance: 0.5)"

    # (b) the judge protocol, with the second positive hidden among the candidates
    judge = hide_second_positives(held, root / "judge-input")
    stats = judge_against_truth(model_dir, judge, root / "verdicts.jsonl")
    t = stats["truth"]
    base_rate = t["false_negative_rate_among_candidates"]
    assert base_rate == pytest.approx(1 / 3)
    assert stats["null_verdicts"] <= 0.1 * stats["candidates"]  # the model writes the format
    # chance: a judge removing candidates at random has precision = base rate, recall = elimination rate
    assert t["precision"] is not None and t["precision"] > base_rate + 0.25, t
    assert t["recall"] > stats["elimination_rate"] + 0.3, (t, stats["elimination_rate"])
    assert [r["verdict"] for _, r in read_jsonl(root / "verdicts.jsonl")].count(None) == stats["null_verdicts"]
