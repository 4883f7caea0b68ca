"""MIFT's translation kinds: pre-translated files aligned with the English source, a seq2seq model built locally
(an M2M100 with random weights and a tokenizer trained here) with its cache, an LLM behind a real local
OpenAI-compatible server; every failed translation is recorded and counted, never replaced by the English text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from boostmdr.formats import FormatError, Instruction, read_instructions, write_instructions
from boostmdr.languages import model_language_token
from boostmdr.llm.cache import GenerationCache
from boostmdr.translate import (
    Seq2SeqSettings,
    Seq2SeqTranslator,
    main,
    translate_from_files,
    translate_records,
)
from judge_fixtures import random_tiny_lm, transformers_serve

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SOURCE = [
    Instruction("Summarize the text.", "the key points", "short list", 0),
    Instruction("Give the main points.", "", "a list", 1),
    Instruction("Write a poem.", "", "roses", 2),
]


def test_files_kind_takes_the_aligned_records_and_counts_empty_ones_as_failed(tmp_path):
    write_instructions(tmp_path / "tr.sw.jsonl", [
        Instruction("Fupisha maandishi.", "pointi muhimu", "orodha fupi", 0),
        Instruction("Toa pointi kuu.", "", "", 1),  # the output was lost in translation
        Instruction("Andika shairi.", "", "waridi", 2),
    ])  # fmt: skip
    ok, failures = translate_from_files(str(tmp_path / "tr.{lang}.jsonl"), SOURCE[:2], 3, "sw")
    assert ok == [Instruction("Fupisha maandishi.", "pointi muhimu", "orodha fupi", 0, "sw")]
    assert failures == [{"index": 1, "field": "output", "reason": f"empty in {tmp_path / 'tr.sw.jsonl'}"}]
    with pytest.raises(FormatError, match=r"tr\.sw\.jsonl: 3 records but the English source has 4"):
        translate_from_files(str(tmp_path / "tr.{lang}.jsonl"), SOURCE, 4, "sw")
    with pytest.raises(FileNotFoundError, match=r"tr\.ru\.jsonl: no translated instruction file for 'ru'"):
        translate_from_files(str(tmp_path / "tr.{lang}.jsonl"), SOURCE, 3, "ru")


def test_language_tokens_of_each_code_scheme():
    assert model_language_token("sw", "flores200") == "swh_Latn" and model_language_token("te", "m2m100") == "__te__"
    assert model_language_token("sw", "m2m100", {"sw": "swa"}) == "__swa__" and model_language_token("sw", "none") is None
    with pytest.raises(ValueError, match="no FLORES-200 code for 'xx'"):
        model_language_token("xx", "flores200")


def build_seq2seq(root: Path) -> Path:
    """A tiny M2M100 with random weights and a word-level tokenizer with M2M100's language tokens. ``__sw__``
    is a special token, as in M2M100; ``__ru__`` an ordinary word (so what the random model writes after it
    survives decoding); there is no ``__te__``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import M2M100Config, M2M100ForConditionalGeneration, PreTrainedTokenizerFast

    words = "summarize the text key points short list give main write a poem roses __ru__".split()
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<s>", "<unk>", "__en__", "__sw__"]))
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", bos_token="<s>", unk_token="<unk>")
    torch.manual_seed(0)
    config = M2M100Config(
        vocab_size=len(fast), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=0, eos_token_id=eos, bos_token_id=2, decoder_start_token_id=eos,
    )  # fmt: skip
    out = root / "tiny-m2m100"
    M2M100ForConditionalGeneration(config).save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory):
    return build_seq2seq(tmp_path_factory.mktemp("seq2seq"))


def test_seq2seq_translates_line_by_line_as_the_model_generates_and_caches_every_line(seq2seq, tmp_path):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    settings = Seq2SeqSettings(code_scheme="m2m100", max_new_tokens=5)
    cache = GenerationCache(tmp_path / "cache" / "job.jsonl")
    got, failures = translate_records(SOURCE, "ru", Seq2SeqTranslator(str(seq2seq), settings, device="cpu", cache=cache))
    cache.close()
    assert failures == [] and [r.index for r in got] == [0, 1, 2] and all(r.lang == "ru" for r in got)
    tok, model = AutoTokenizer.from_pretrained(seq2seq), AutoModelForSeq2SeqLM.from_pretrained(seq2seq).eval()
    with torch.no_grad():
        ids = model.generate(**tok(["Summarize the text."], return_tensors="pt"), forced_bos_token_id=tok.convert_tokens_to_ids("__ru__"),
                             max_new_tokens=5, num_beams=1, do_sample=False)  # fmt: skip
    assert got[0].instruction == " ".join(tok.decode(ids[0], skip_special_tokens=True).split()) != ""
    assert len(GenerationCache(tmp_path / "cache" / "other.jsonl")) == 7  # 7 distinct non-empty texts, one line each

    class Unloadable(Seq2SeqTranslator):  # a rerun takes every line from the cache: the model is never called
        def _translate_batch(self, *args):
            raise AssertionError("called the model for a cached line")

    again = Unloadable(str(seq2seq), settings, device="cpu", cache=GenerationCache(tmp_path / "cache" / "rerun.jsonl"))
    assert translate_records(SOURCE, "ru", again)[0] == got


def test_seq2seq_failures_are_recorded_and_counted_never_replaced_by_english(seq2seq, tmp_path):
    settings = Seq2SeqSettings(code_scheme="m2m100", max_new_tokens=5, max_input_tokens=4)
    translator = Seq2SeqTranslator(str(seq2seq), settings, device="cpu")
    got, failures = translate_records(SOURCE, "ru", translator)
    # one token per word (unknown words too) and </s>: only "Give the main points." is over the limit of 4
    assert [r.index for r in got] == [0, 2]
    assert failures == [
        {"index": 1, "field": "instruction", "reason": "line 'Give the main points.': line of 5 tokens is longer than max_input_tokens 4"},
    ]
    # one new token into sw: the forced language token, which is special and decodes to nothing: counted as failed
    one_token = Seq2SeqTranslator(str(seq2seq), Seq2SeqSettings(code_scheme="m2m100", max_new_tokens=1), device="cpu")
    empty, failed = translate_records(SOURCE[2:], "sw", one_token)
    assert empty == [] and failed == [{"index": 2, "field": "instruction", "reason": "line 'Write a poem.': empty translation"}]
    with pytest.raises(ValueError, match=r"no language token '__te__' for 'te'.*'codes'.*NLLB-200"):
        translate_records(SOURCE, "te", translator)


def test_cli_writes_translations_and_failure_statistics(seq2seq, tmp_path):
    write_instructions(tmp_path / "selected.jsonl", SOURCE)
    main(["transformers", "--records", str(tmp_path / "selected.jsonl"), "--lang", "ru", "--model", str(seq2seq),
          "--code-scheme", "m2m100", "--max-input-tokens", "4", "--device", "cpu", "--cache", str(tmp_path / "c" / "ru.jsonl"),
          "--out", str(tmp_path / "ru.jsonl"), "--stats", str(tmp_path / "ru.stats.json")])  # fmt: skip
    stats = json.loads((tmp_path / "ru.stats.json").read_text())
    assert (stats["records"], stats["translated"], stats["failed"]) == (3, 2, 1)
    assert stats["failure_rate"] == pytest.approx(1 / 3) and stats["failed_by_field"] == {"instruction": 1}
    assert [r.index for r in read_instructions(tmp_path / "ru.jsonl")] == [0, 2]


@pytest.mark.slow
def test_llm_translation_through_a_real_local_server_is_cached_and_counts_failures(tmp_path_factory, tmp_path):
    from boostmdr.llm import get_backend
    from boostmdr.llm.prompt import PromptTemplate, TurnFormat
    from boostmdr.translate import LLMTranslationSettings, LLMTranslator

    from conftest import REPO

    lm = random_tiny_lm(tmp_path_factory.mktemp("served-lm"))
    template = PromptTemplate.load(REPO / "config" / "prompts" / "translate.txt", ("text", "language"))
    with transformers_serve(lm, tmp_path / "serve.log") as url:
        with get_backend("http", model=str(lm), base_url=url, api_key_env="BOOSTMDR_UNSET_KEY", concurrency=2) as backend:
            cache = GenerationCache(tmp_path / "cache" / "a.jsonl")
            tr = LLMTranslator(backend, template, TurnFormat("plain"), LLMTranslationSettings(max_new_tokens=6, retries=1), cache)
            got, failures = translate_records(SOURCE, "sw", tr)
            cache.close()
            assert len(got) + len({f["index"] for f in failures}) == 3
            assert all(r.lang == "sw" and r.instruction.strip() for r in got)
            assert all(f["reason"].startswith("no usable answer") for f in failures)
            rerun = LLMTranslator(backend, template, TurnFormat("plain"), LLMTranslationSettings(max_new_tokens=6, retries=1),
                                  GenerationCache(tmp_path / "cache" / "b.jsonl"))  # fmt: skip
            assert translate_records(SOURCE, "sw", rerun) == (got, failures)
    served_requests = (tmp_path / "serve.log").read_text().count("POST /v1/completions")
    assert len(GenerationCache(tmp_path / "cache" / "c.jsonl")) == served_requests > 0  # the rerun sent none
