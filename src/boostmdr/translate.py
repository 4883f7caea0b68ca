"""Translation of English texts into a target language: how stage 2 makes its multilingual instruction set.

The paper translates the instructions with Google Translate; the authors' code does the same and, when a
batch fails, keeps the English text in its place. Here a failed translation (an exception, an empty or
unusable output) is recorded with its reason and counted, and the record it belongs to leaves the training
set; it is never replaced by the English text. Three kinds, one interface (:class:`TextTranslator`):

* **transformers** (:class:`Seq2SeqTranslator`): a sequence-to-sequence translation model by local path or
  hub id, loaded offline with ``AutoModelForSeq2SeqLM``: NLLB-200 (code scheme ``flores200``), M2M100
  (``m2m100``), or a Marian opus-mt model per language pair (``none``; ``{lang}`` in the model id names the
  target, e.g. ``Helsinki-NLP/opus-mt-en-{lang}``). The target language is forced as the first generated
  token (NLLB, M2M100). Texts are translated line by line (such models are trained on sentences, and an
  Alpaca list keeps its line breaks); a line longer than ``max_input_tokens`` fails rather than being cut.
  Greedy decoding by default (``num_beams`` 1). Every translated line is cached in a
  :class:`~boostmdr.llm.cache.GenerationCache` under a key of the model's fingerprint, the language codes,
  the line and the decoding settings, one file per job (the same rules as the LLM caches).
* **llm** (:class:`LLMTranslator`): any :mod:`boostmdr.llm` backend with a translation prompt template
  (placeholders ``{text}`` and ``{language}``), greedy, through the generation runner (cached, batched,
  retried; an empty answer counts as unparsed and is retried with a new seed, then recorded as failed).
* **files**: translations made elsewhere (an existing translated Alpaca, or your own), one Alpaca-format
  file per language aligned record by record with the English source (:func:`translate_from_files`).

Instruction records are translated field by field (:func:`translate_records`); an empty ``input`` stays empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .formats import FormatError, Instruction, read_instructions
from .languages import CODE_SCHEMES, language_name, model_language_token
from .llm.base import local_model_fingerprint
from .llm.cache import GenerationCache
from .llm.prompt import PromptTemplate, TurnFormat
from .llm.runner import GenerationRunner, Item, RunnerSettings

log = logging.getLogger(__name__)

TRANSLATION_KINDS = ("files", "transformers", "llm")
FIELDS = ("instruction", "input", "output")
LLM_PLACEHOLDERS = ("text", "language")
SEED_NAMESPACE = "translate"
CACHE_KEY_VERSION = 1


@dataclass(frozen=True)
class Translation:
    """One translated text, or ``None`` with the reason it failed."""

    text: str | None
    error: str | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.error is None):
            raise ValueError("a translation has either a text or an error")


class TextTranslator(Protocol):
    """Translates English texts into one language at a time."""

    def describe(self) -> dict[str, Any]: ...

    def translate(self, texts: Sequence[str], lang: str) -> list[Translation]: ...


# ------------------------------------------------------------------------------------ seq2seq models


@dataclass(frozen=True)
class Seq2SeqSettings:
    """Decoding of a translation model (every setting is part of the cache key)."""

    code_scheme: str = "flores200"
    batch_size: int = 16
    num_beams: int = 1
    max_new_tokens: int = 512
    max_input_tokens: int = 256
    source_lang: str = "en"

    def __post_init__(self) -> None:
        if self.code_scheme not in CODE_SCHEMES:
            raise ValueError(f"code_scheme {self.code_scheme!r}: choose one of {', '.join(CODE_SCHEMES)}")
        if min(self.batch_size, self.num_beams, self.max_new_tokens, self.max_input_tokens) < 1:
            raise ValueError("batch_size, num_beams, max_new_tokens and max_input_tokens must be >= 1")


class Seq2SeqTranslator:
    """A translation model through transformers (see the module docstring)."""

    kind = "transformers"

    def __init__(
        self,
        model: str,
        settings: Seq2SeqSettings = Seq2SeqSettings(),
        codes: dict[str, str] | None = None,
        device: str = "auto",
        cache: GenerationCache | None = None,
    ) -> None:
        import torch

        self.model_spec = str(model)
        self.settings = settings
        self.codes = dict(codes or {})
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.cache = cache
        self._loaded: dict[str, tuple[Any, Any, str]] = {}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model_spec, "code_scheme": self.settings.code_scheme, "device": str(self.device)}

    def _model(self, lang: str) -> tuple[Any, Any, str]:
        """(tokenizer, model, fingerprint) for translating into ``lang`` (Marian: one model per language)."""
        name = self.model_spec.replace("{lang}", lang)
        if name not in self._loaded:
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(name)
                model = AutoModelForSeq2SeqLM.from_pretrained(name)
            except OSError as err:
                raise ValueError(f"translation model {name!r} cannot be loaded offline ({err})") from err
            model.to(self.device).eval()
            self._loaded[name] = (tokenizer, model, local_model_fingerprint(name))
        return self._loaded[name]

    def _target_token(self, tokenizer: Any, lang: str) -> int | None:
        token = model_language_token(lang, self.settings.code_scheme, self.codes)
        if token is None:
            return None
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ValueError(
                f"translation model {self.model_spec!r} has no language token {token!r} for {lang!r} "
                f"(code scheme {self.settings.code_scheme}); give the model's code under the translation "
                "setting 'codes', or use a model that covers the language (NLLB-200 covers all 16 MIRACL languages)"
            )
        return token_id

    def cache_key(self, fingerprint: str, target: str | None, line: str) -> str:
        s = self.settings
        payload = {
            "v": CACHE_KEY_VERSION, "kind": self.kind, "model": fingerprint, "scheme": s.code_scheme,
            "source": s.source_lang, "target": target, "text": line, "num_beams": s.num_beams,
            "max_new_tokens": s.max_new_tokens, "max_input_tokens": s.max_input_tokens,
        }  # fmt: skip
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()

    def translate(self, texts: Sequence[str], lang: str) -> list[Translation]:
        tokenizer, model, fingerprint = self._model(lang)
        target_id = self._target_token(tokenizer, lang)
        source = model_language_token(self.settings.source_lang, self.settings.code_scheme, self.codes)
        if source is not None and hasattr(tokenizer, "src_lang"):
            tokenizer.src_lang = source.strip("_")  # NLLB: eng_Latn; M2M100: en (its token is __en__)
        target = tokenizer.convert_ids_to_tokens(target_id) if target_id is not None else None
        lines = sorted({line.strip() for t in texts for line in t.split("\n") if line.strip()})
        keys = {line: self.cache_key(fingerprint, target, line) for line in lines}
        done: dict[str, Translation] = {}
        if self.cache is not None:
            hits = self.cache.get_many(keys.values())
            done = {line: Translation(hits[k]) for line, k in keys.items() if k in hits}
        todo = [line for line in lines if line not in done]
        log.info("%s: %d distinct lines, %d from the cache, %d to translate", lang, len(lines), len(done), len(todo))
        from tqdm import tqdm

        bs = self.settings.batch_size
        for b in tqdm(range(0, len(todo), bs), desc=f"translating into {lang}", unit="batch", disable=not todo):
            batch = todo[b : b + bs]
            try:
                out = self._translate_batch(tokenizer, model, target_id, batch)
            except (RuntimeError, ValueError, IndexError) as err:
                log.warning("%s: a batch of %d lines failed (%s); translating them one by one", lang, len(batch), err)
                out = []
                for line in batch:
                    try:
                        out += self._translate_batch(tokenizer, model, target_id, [line])
                    except (RuntimeError, ValueError, IndexError) as one:
                        out.append(Translation(None, f"{type(one).__name__}: {one}"))
            rows = []
            for line, tr in zip(batch, out):
                done[line] = tr
                if tr.text is not None:
                    rows.append((keys[line], tr.text, 0, 0, self.kind, self.model_spec))
            if self.cache is not None and rows:
                self.cache.put_many(rows)
        return [_join_lines(t, done) for t in texts]

    def _translate_batch(self, tokenizer: Any, model: Any, target_id: int | None, lines: list[str]) -> list[Translation]:
        import torch

        s = self.settings
        lengths = [len(tokenizer(line)["input_ids"]) for line in lines]
        results: list[Translation | None] = [
            Translation(None, f"line of {n} tokens is longer than max_input_tokens {s.max_input_tokens}")
            if n > s.max_input_tokens
            else None
            for n in lengths
        ]
        keep = [i for i, r in enumerate(results) if r is None]
        if keep:
            enc = tokenizer([lines[i] for i in keep], return_tensors="pt", padding=True).to(self.device)
            kwargs: dict[str, Any] = {"max_new_tokens": s.max_new_tokens, "num_beams": s.num_beams, "do_sample": False}
            if target_id is not None:
                kwargs["forced_bos_token_id"] = target_id
            with torch.inference_mode():
                out = model.generate(**enc, **kwargs)
            for i, text in zip(keep, tokenizer.batch_decode(out, skip_special_tokens=True)):
                text = " ".join(text.split())
                results[i] = Translation(text) if text else Translation(None, "empty translation")
        return [r for r in results if r is not None]


def _join_lines(text: str, done: dict[str, Translation]) -> Translation:
    """A multi-line text from its translated lines (line breaks kept); fails if any line failed."""
    out = []
    for line in text.split("\n"):
        if not line.strip():
            out.append("")
            continue
        tr = done[line.strip()]
        if tr.text is None:
            return Translation(None, f"line {line.strip()[:60]!r}: {tr.error}")
        out.append(tr.text)
    joined = "\n".join(out).strip()
    return Translation(joined) if joined else Translation(None, "empty translation")


# ------------------------------------------------------------------------------------------ LLMs


@dataclass(frozen=True)
class LLMTranslationSettings:
    max_new_tokens: int = 512
    retries: int = 2
    seed: int = 0
    batch_size: int = 64


def parse_translation(text: str) -> str | None:
    """The model's answer without surrounding white space; ``None`` (retried, then failed) when empty."""
    text = text.strip()
    return text or None


class LLMTranslator:
    """An LLM backend with a translation prompt (see the module docstring)."""

    kind = "llm"

    def __init__(
        self,
        backend: Any,
        template: PromptTemplate,
        turn: TurnFormat,
        settings: LLMTranslationSettings = LLMTranslationSettings(),
        cache: GenerationCache | None = None,
    ) -> None:
        if set(template.placeholders) != set(LLM_PLACEHOLDERS):
            raise ValueError(f"{template.source}: a translation template has the placeholders {{text}} and {{language}}")
        self.backend = backend
        self.template = template
        self.turn = turn
        self.settings = settings
        self.cache = cache

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.backend.describe(), "template_sha256": self.template.sha256}

    def translate(self, texts: Sequence[str], lang: str) -> list[Translation]:
        s = self.settings
        name = language_name(lang)
        unique = sorted(set(texts))
        items = {
            t: Item.make(
                hashlib.sha256(f"{lang}\0{t}".encode()).hexdigest(),
                self.turn.wrap(self.template.render(text=t, language=name)),
                [(1.0, 0.0)],
            )
            for t in unique
        }
        runner = GenerationRunner(
            self.backend,
            RunnerSettings(max_new_tokens=s.max_new_tokens, retries=s.retries, seed=s.seed, namespace=SEED_NAMESPACE, batch_size=s.batch_size),
            parse_translation,
            self.cache,
        )
        counts = runner.run(list(items.values()), desc=f"translating into {lang}")
        log.info("%s: %s", lang, dict(counts))
        out = []
        for t in texts:
            sample = items[t].samples[0]
            if sample.parsed is not None:
                out.append(Translation(sample.parsed))
            else:
                out.append(Translation(None, f"no usable answer in {len(sample.attempts)} attempt(s) (empty output)"))
        return out


# --------------------------------------------------------------------------------------- records


def translate_records(
    records: Sequence[Instruction], lang: str, translator: TextTranslator
) -> tuple[list[Instruction], list[dict[str, Any]]]:
    """Each record's non-empty fields translated into ``lang``: ``(translated records, failures)``. A record
    with any failed field is left out and listed in ``failures`` as ``{"index", "field", "reason"}``."""
    texts = sorted({getattr(r, f) for r in records for f in FIELDS if getattr(r, f).strip()})
    done = dict(zip(texts, translator.translate(texts, lang))) if texts else {}
    ok: list[Instruction] = []
    failures: list[dict[str, Any]] = []
    for r in records:
        fields: dict[str, str] = {}
        for f in FIELDS:
            source = getattr(r, f)
            if not source.strip():
                fields[f] = ""
                continue
            tr = done[source]
            if tr.text is None:
                failures.append({"index": r.index, "field": f, "reason": tr.error})
                break
            fields[f] = tr.text
        else:
            ok.append(Instruction(fields["instruction"], fields["input"], fields["output"], r.index, lang))
    return ok, failures


def translate_from_files(
    pattern: str, records: Sequence[Instruction], source_size: int, lang: str
) -> tuple[list[Instruction], list[dict[str, Any]]]:
    """The records' translations read from ``pattern`` with ``{lang}`` filled in: an Alpaca-format file of
    the same length as the English source (``source_size`` records), record ``i`` the translation of source
    record ``i``. A translated record with an empty instruction or output (where the source has one) fails."""
    path = pattern.replace("{lang}", lang)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no translated instruction file for {lang!r} (translation files pattern {pattern!r})")
    translated = read_instructions(path)
    if len(translated) != source_size:
        raise FormatError(
            path, None, f"{len(translated)} records but the English source has {source_size}: a translated file "
            "must hold one record per source record, in the same order"
        )  # fmt: skip
    ok: list[Instruction] = []
    failures: list[dict[str, Any]] = []
    for r in records:
        t = translated[r.index]  # type: ignore[index]
        bad = [f for f in FIELDS if getattr(r, f).strip() and not getattr(t, f).strip()]
        if bad:
            failures.append({"index": r.index, "field": bad[0], "reason": f"empty in {path}"})
            continue
        ok.append(Instruction(t.instruction, t.input, t.output, r.index, lang))
    return ok, failures


# --------------------------------------------------------------------------------------------- CLI


def translation_stats(
    lang: str, records: int, ok: int, failures: Sequence[dict[str, Any]], translator: dict[str, Any]
) -> dict[str, Any]:
    """The stats file of one language's translation: counts, failure rate, failures by field, examples."""
    by_field: dict[str, int] = {}
    for f in failures:
        by_field[f["field"]] = by_field.get(f["field"], 0) + 1
    return {
        "lang": lang,
        "translator": translator,
        "records": records,
        "translated": ok,
        "failed": len(failures),
        "failure_rate": len(failures) / records if records else None,
        "failed_by_field": by_field,
        "failures": list(failures[:50]),
    }


def build_parser() -> Any:
    import argparse

    from .llm.options import add_backend_arguments
    from .llm.prompt import PROMPT_FORMATS

    p = argparse.ArgumentParser(
        prog="python -m boostmdr.translate",
        description="Translate selected English instruction records into one language (stage 2, MIFT data).",
    )
    sub = p.add_subparsers(dest="kind", required=True)
    kinds = {}
    for kind, help_ in (
        ("files", "read translations made elsewhere (one Alpaca-format file per language)"),
        ("transformers", "a seq2seq translation model (NLLB, M2M100, Marian) through transformers"),
        ("llm", "an LLM backend with a translation prompt"),
    ):
        k = sub.add_parser(kind, help=help_)
        k.add_argument("--records", required=True, help="selected English records (python -m boostmdr.mift select)")
        k.add_argument("--lang", required=True, help="target language code")
        k.add_argument("--out", required=True, help="translated records (JSON lines)")
        k.add_argument("--stats", required=True, help="translation statistics (JSON)")
        k.add_argument("--threads", type=int, default=None)
        k.add_argument("--log", default=None)
        kinds[kind] = k
    f = kinds["files"]
    f.add_argument("--source", required=True, help="the English source file the records were selected from")
    f.add_argument("--files", required=True, help="path pattern of the translated files, with {lang}")
    d, ld = Seq2SeqSettings(), LLMTranslationSettings()
    t = kinds["transformers"]
    t.add_argument("--model", required=True, help="model path or hub id; {lang} for one model per language (Marian)")
    t.add_argument("--code-scheme", choices=CODE_SCHEMES, default=d.code_scheme)
    t.add_argument("--codes", nargs="*", default=[], help="LANG=CODE overrides of the model's language codes")
    t.add_argument("--batch-size", type=int, default=d.batch_size)
    t.add_argument("--num-beams", type=int, default=d.num_beams)
    t.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    t.add_argument("--max-input-tokens", type=int, default=d.max_input_tokens)
    t.add_argument("--device", default="auto")
    t.add_argument("--cache", default=None, help="this job's cache file; every *.jsonl beside it is read")
    m = kinds["llm"]
    add_backend_arguments(m)
    m.add_argument("--prompt", required=True, help="translation template with {text} and {language}")
    m.add_argument("--prompt-format", choices=PROMPT_FORMATS, default="auto")
    m.add_argument("--max-new-tokens", type=int, default=ld.max_new_tokens)
    m.add_argument("--retries", type=int, default=ld.retries)
    m.add_argument("--seed", type=int, default=ld.seed)
    m.add_argument("--batch-size", type=int, default=ld.batch_size)
    m.add_argument("--cache", default=None, help="this job's generation cache file; every *.jsonl beside it is read")
    return p


def _codes(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        lang, sep, code = pair.partition("=")
        if not sep or not lang or not code:
            raise ValueError(f"--codes {pair!r}: give LANG=CODE, e.g. sw=swh_Latn")
        out[lang] = code
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from .formats import write_instructions, write_json
    from .utils import set_threads, setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    set_threads(args.threads)
    records = read_instructions(args.records)
    if any(r.index is None for r in records):
        raise FormatError(args.records, None, "records need their 'index' in the English source")
    cache = GenerationCache(args.cache) if getattr(args, "cache", None) else None
    try:
        if args.kind == "files":
            ok, failures = translate_from_files(args.files, records, len(read_instructions(args.source)), args.lang)
            described: dict[str, Any] = {"kind": "files", "files": args.files}
        elif args.kind == "transformers":
            settings = Seq2SeqSettings(
                args.code_scheme, args.batch_size, args.num_beams, args.max_new_tokens, args.max_input_tokens
            )
            translator: TextTranslator = Seq2SeqTranslator(args.model, settings, _codes(args.codes), args.device, cache)
            set_threads(args.threads)
            ok, failures = translate_records(records, args.lang, translator)
            described = translator.describe()
        else:
            from .llm import get_backend
            from .llm.options import backend_settings

            template = PromptTemplate.load(args.prompt, LLM_PLACEHOLDERS)
            with get_backend(args.backend, **backend_settings(args, seed=args.seed)) as backend:
                set_threads(args.threads)
                translator = LLMTranslator(
                    backend,
                    template,
                    TurnFormat.for_model(args.prompt_format, args.model),
                    LLMTranslationSettings(args.max_new_tokens, args.retries, args.seed, args.batch_size),
                    cache,
                )
                ok, failures = translate_records(records, args.lang, translator)
                described = translator.describe()
    finally:
        if cache is not None:
            cache.close()
    write_instructions(args.out, ok)
    stats = translation_stats(args.lang, len(records), len(ok), failures, described)
    write_json(args.stats, stats)
    log.info("%s: %d of %d records translated, %d failed (%s)", args.lang, len(ok), len(records), len(failures), stats["failed_by_field"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
