"""BM25 baseline through Pyserini's Lucene (Anserini 1.7.1, bundled with pyserini 1.6).

Two steps, each its own process (the JVM starts once per process, see :mod:`boostmdr.lucene`):

``index``
    Converts the prepared corpus (``results/data/{lang}/corpus.jsonl``) into a Pyserini
    ``JsonCollection`` (``{"id", "contents"}`` with contents = title + " " + text) in a temporary
    sibling directory and builds a Lucene index with the language's own analyzer and ``storeRaw``,
    the equivalent of ``python -m pyserini.index.lucene --collection JsonCollection ... -language LANG
    --storeRaw``. The indexer runs in this process through pyjnius (``IndexCollection`` built from its
    ``Args``), not as ``python -m pyserini.index.lucene`` in a child process: a child would start a JVM
    of its own anyway, and only in-process do we get Anserini's counters back (indexed, empty,
    skipped, errors) to check them instead of scraping its log. The index is built in a temporary
    sibling directory; the metadata file :data:`INDEX_META` is written into it last and the directory
    is then renamed into place, so an index directory that exists is complete.

``search``
    ``LuceneSearcher`` with ``set_language`` and ``set_bm25(k1, b)``, ``batch_search`` in batches,
    written with :func:`boostmdr.formats.write_run` (score descending, ties by docid ascending).

Analyzers. Anserini picks the analyzer from the language code, identically at indexing
(``IndexCollection``) and at search time (``SimpleSearcher.set_language``):

* the codes of ``io.anserini.analysis.AnalyzerMap`` get Lucene's language analyzer (ar bn da de es fa
  fi fr hi hu id it ja ko nl no pl pt ru sv te th tr uk zh in Anserini 1.7.1; ko and zh share the CJK
  bigram analyzer); this list is read from the running JVM, not copied here;
* ``en`` gets Anserini's ``DefaultEnglishAnalyzer`` (Porter stemming, stopwords);
* ``ha so sw yo`` get Lucene's ``WhitespaceAnalyzer``: split on whitespace only, no lowercasing and no
  punctuation removal. This is what Pyserini's MIRACL BM25 numbers use for Swahili.
* Any other code is silently analysed as English by Anserini. Here it is an error listing the
  supported codes, unless a fallback is chosen explicitly with ``--analyzer-language``.

The analyzer's class is recorded in the index metadata and checked again at search time, so a search
can never analyse queries differently from the documents.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from boostmdr import formats
from boostmdr.formats import FormatError, Hit, Run
from boostmdr.lucene import import_pyserini
from boostmdr.utils import set_threads, setup_logging

logger = logging.getLogger(__name__)

INDEX_META = "boostmdr_index.json"
"""Metadata file inside an index directory, written last: its presence means the index is complete."""
INDEX_FORMAT = "boostmdr-bm25-index/1"

ENGLISH_LANGUAGE = "en"
WHITESPACE_LANGUAGES = ("ha", "so", "sw", "yo")
"""Codes Anserini analyses with Lucene's WhitespaceAnalyzer (hard-coded in IndexCollection and SimpleSearcher)."""
ENGLISH_ANALYZER_CLASS = "io.anserini.analysis.DefaultEnglishAnalyzer"
WHITESPACE_ANALYZER_CLASS = "org.apache.lucene.analysis.core.WhitespaceAnalyzer"


class BM25Error(ValueError):
    """A BM25 step cannot run as asked; the message names the setting or file and the fix."""


@dataclass(frozen=True)
class BM25Settings:
    """Scoring and ranking settings of a BM25 search (Pyserini's MIRACL defaults: k1 0.9, b 0.4)."""

    k1: float = 0.9
    b: float = 0.4
    depth: int = 100

    def __post_init__(self) -> None:
        if not self.k1 >= 0:
            raise ValueError(f"BM25 k1 must be >= 0, got {self.k1}")
        if not 0 <= self.b <= 1:
            raise ValueError(f"BM25 b must be in [0, 1], got {self.b}")
        if self.depth < 1:
            raise ValueError(f"search depth must be >= 1, got {self.depth}")


@dataclass(frozen=True)
class IndexMeta:
    """What :data:`INDEX_META` records about an index (read back by :func:`read_index_meta`)."""

    format: str
    language: str
    analyzer_language: str
    analyzer: str
    corpus: str
    corpus_bytes: int
    documents: int
    indexed: int
    empty: int
    contents: str
    anserini_jar: str
    pyserini: str


# ------------------------------------------------------------------------------------------ analyzers


def _jvm_classes():
    """Start the JVM (Java 21 shim) with Anserini on the classpath and return ``jnius.autoclass``."""
    import_pyserini("pyserini.pyclass")
    from jnius import autoclass

    return autoclass


def lucene_analyzers() -> dict[str, str]:
    """Language code -> analyzer class that the installed Anserini uses for it (starts the JVM)."""
    autoclass = _jvm_classes()
    analyzer_map = autoclass("io.anserini.analysis.AnalyzerMap")
    table = {str(code): str(cls) for code, cls in (
        (e.getKey(), e.getValue()) for e in analyzer_map.analyzerMap.entrySet().toArray()
    )}
    table[ENGLISH_LANGUAGE] = ENGLISH_ANALYZER_CLASS
    for code in WHITESPACE_LANGUAGES:
        table[code] = WHITESPACE_ANALYZER_CLASS
    return dict(sorted(table.items()))


def resolve_analyzer_language(language: str, analyzer_language: str | None, supported: Iterable[str]) -> str:
    """The code to hand Anserini for ``language``: itself if supported, else the explicit fallback.

    Raises :class:`BM25Error` listing the supported codes when neither is usable.
    """
    supported = sorted(supported)
    if analyzer_language:
        if analyzer_language not in supported:
            raise BM25Error(
                f"--analyzer-language {analyzer_language!r} has no Lucene analyzer in Anserini; "
                f"supported codes: {' '.join(supported)}"
            )
        if analyzer_language != language:
            logger.warning("language %s is analysed with the analyzer of %r (--analyzer-language)",
                           language, analyzer_language)
        return analyzer_language
    if language not in supported:
        raise BM25Error(
            f"language {language!r} has no Lucene analyzer in Anserini (it would silently be analysed as "
            f"English); supported codes: {' '.join(supported)}. Pass --analyzer-language CODE to choose a "
            f"fallback explicitly (e.g. 'sw' for whitespace tokenisation, 'en' for English)"
        )
    return language


# ---------------------------------------------------------------------------------------------- index


def write_json_collection(corpus: str | os.PathLike, out_dir: str | os.PathLike, num_files: int = 1) -> int:
    """Write the prepared corpus as a Pyserini JsonCollection (``{"id", "contents"}`` lines).

    Documents are dealt round-robin into ``num_files`` files so that Anserini's indexer threads (one
    per file) can work in parallel. Returns the number of documents.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    num_files = max(1, num_files)
    handles = [open(out_dir / f"part-{i:03d}.jsonl", "w", encoding="utf-8") for i in range(num_files)]
    n = 0
    try:
        for rec in formats.read_corpus(corpus):
            fh = handles[n % num_files]
            fh.write(json.dumps({"id": rec["docid"], "contents": formats.passage_text(rec)}, ensure_ascii=False))
            fh.write("\n")
            n += 1
    finally:
        for fh in handles:
            fh.close()
    return n


def _anserini_jar() -> str:
    spec = importlib.util.find_spec("pyserini")
    jars = sorted(Path(spec.origin).parent.glob("resources/jars/anserini-*.jar")) if spec and spec.origin else []
    return jars[-1].name if jars else "unknown"


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished index ``src`` to ``dst``; an existing ``dst`` must be an index of ours or empty."""
    if dst.exists():
        if not dst.is_dir():
            raise BM25Error(f"index path {dst} exists and is not a directory")
        if any(dst.iterdir()) and not (dst / INDEX_META).exists():
            raise BM25Error(f"refusing to replace {dst}: it is not empty and holds no {INDEX_META} "
                            f"(not an index of ours)")
        logger.warning("replacing the existing index %s", dst)
        shutil.rmtree(dst)
    os.replace(src, dst)


def build_index(
    corpus: str | os.PathLike,
    language: str,
    index_dir: str | os.PathLike,
    threads: int = 1,
    analyzer_language: str | None = None,
) -> IndexMeta:
    """Build a BM25 Lucene index of the prepared corpus (see the module docstring); returns its metadata."""
    corpus, index_dir = Path(corpus), Path(index_dir)
    if not corpus.is_file():
        raise BM25Error(f"--corpus {corpus} does not exist")
    analyzers = lucene_analyzers()
    alang = resolve_analyzer_language(language, analyzer_language, analyzers)
    analyzer = analyzers[alang]
    logger.info("language %s: analyzer %s (Anserini -language %s)", language, analyzer, alang)

    index_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{index_dir.name}.", suffix=".tmp", dir=index_dir.parent))
    try:
        collection, building = work / "collection", work / "index"
        t0 = time.perf_counter()
        n_docs = write_json_collection(corpus, collection, num_files=threads)
        if n_docs == 0:
            raise BM25Error(f"--corpus {corpus} holds no documents")
        logger.info("wrote %d documents as a JsonCollection in %.1f s", n_docs, time.perf_counter() - t0)

        autoclass = _jvm_classes()
        args = autoclass("io.anserini.index.IndexCollection$Args")()
        args.collectionClass = "JsonCollection"
        args.generatorClass = "DefaultLuceneDocumentGenerator"
        args.input = str(collection)
        args.index = str(building)
        args.language = alang
        args.storeRaw = True
        args.threads = max(1, threads)
        args.quiet = True
        t0 = time.perf_counter()
        indexer = autoclass("io.anserini.index.IndexCollection")(args)
        indexer.run()
        counters = indexer.getCounters()
        indexed, empty = int(counters.indexed.get()), int(counters.empty.get())
        skipped, unindexable, errors = (int(counters.skipped.get()), int(counters.unindexable.get()),
                                        int(counters.errors.get()))
        logger.info("Anserini indexed %d documents in %.1f s (empty %d, skipped %d, unindexable %d, errors %d)",
                    indexed, time.perf_counter() - t0, empty, skipped, unindexable, errors)
        if errors or skipped or unindexable or indexed + empty != n_docs:
            raise BM25Error(
                f"indexing {corpus} failed: {n_docs} documents written, Anserini indexed {indexed} "
                f"(empty {empty}, skipped {skipped}, unindexable {unindexable}, errors {errors})"
            )
        if empty:
            logger.warning("%d documents of %s have empty text and cannot be retrieved by BM25", empty, corpus)
        shutil.rmtree(collection)

        meta = IndexMeta(
            format=INDEX_FORMAT,
            language=language,
            analyzer_language=alang,
            analyzer=analyzer,
            corpus=str(corpus),
            corpus_bytes=corpus.stat().st_size,
            documents=n_docs,
            indexed=indexed,
            empty=empty,
            contents="title + ' ' + text",
            anserini_jar=_anserini_jar(),
            pyserini=importlib.metadata.version("pyserini"),
        )
        formats.write_json(building / INDEX_META, asdict(meta))
        _replace_dir(building, index_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("index ready: %s", index_dir)
    return meta


def read_index_meta(index_dir: str | os.PathLike) -> IndexMeta:
    path = Path(index_dir) / INDEX_META
    if not path.is_file():
        raise BM25Error(
            f"{index_dir} is not a complete BM25 index of this project (no {INDEX_META}); "
            f"build it with `python -m boostmdr.bm25 index`"
        )
    raw = formats.read_json(path)
    try:
        meta = IndexMeta(**raw)
    except TypeError as err:
        raise FormatError(path, None, f"not an index metadata record ({err})") from None
    if meta.format != INDEX_FORMAT:
        raise FormatError(path, None, f"index format {meta.format!r}, expected {INDEX_FORMAT!r}; rebuild the index")
    return meta


# --------------------------------------------------------------------------------------------- search


class BM25Searcher:
    """A Lucene BM25 searcher over one of our indexes, analysing queries exactly as the documents."""

    def __init__(self, index_dir: str | os.PathLike, language: str, settings: BM25Settings,
                 analyzer_language: str | None = None):
        self.meta = read_index_meta(index_dir)
        if language != self.meta.language:
            raise BM25Error(f"--language {language!r} but the index {index_dir} was built for "
                            f"{self.meta.language!r}")
        if analyzer_language and analyzer_language != self.meta.analyzer_language:
            raise BM25Error(f"--analyzer-language {analyzer_language!r} but the index {index_dir} was analysed "
                            f"with {self.meta.analyzer_language!r}")
        self.settings = settings
        # pyserini.search.lucene imports pyserini.encode, whose faiss loader logs failed CPU-variant probes.
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)
        searcher_class = import_pyserini("pyserini.search.lucene").LuceneSearcher
        self.searcher = searcher_class(str(index_dir))
        self.searcher.set_language(self.meta.analyzer_language)
        used = str(self.searcher.object.get_analyzer().getClass().getName())
        if used != self.meta.analyzer:
            raise BM25Error(f"the searcher analyses {self.meta.analyzer_language!r} with {used}, but the index "
                            f"{index_dir} was built with {self.meta.analyzer}; rebuild the index with this Pyserini")
        self.searcher.set_bm25(float(settings.k1), float(settings.b))
        logger.info("searcher on %s (%d docs): analyzer %s, BM25 k1=%g b=%g, depth %d", index_dir,
                    self.searcher.num_docs, used, settings.k1, settings.b, settings.depth)

    def search(self, topics: dict[str, str], threads: int = 1, batch_size: int = 1000) -> Run:
        """Rank the index for every topic; queries with no hit are absent from the returned run."""
        if batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
        qids = list(topics)
        run: Run = {}
        depth = self.settings.depth
        with tqdm(total=len(qids), desc="bm25 search", unit="q", mininterval=5, disable=None) as bar:
            for start in range(0, len(qids), batch_size):
                batch = qids[start:start + batch_size]
                results = self.searcher.batch_search([topics[q] for q in batch], batch, k=depth,
                                                     threads=max(1, threads))
                for qid in batch:
                    hits = results.get(qid)
                    if hits:
                        run[qid] = [Hit(h.docid, float(h.score)) for h in hits]
                bar.update(len(batch))
        return run


def search_topics(index_dir: str | os.PathLike, topics_path: str | os.PathLike, language: str,
                  settings: BM25Settings, out: str | os.PathLike, tag: str = "bm25", threads: int = 1,
                  batch_size: int = 1000, analyzer_language: str | None = None) -> Run:
    """The ``search`` step: read topics, search, write the run; returns the run."""
    topics = formats.read_topics(topics_path)
    if not topics:
        raise BM25Error(f"--topics {topics_path} holds no queries")
    searcher = BM25Searcher(index_dir, language, settings, analyzer_language=analyzer_language)
    t0 = time.perf_counter()
    run = searcher.search(topics, threads=threads, batch_size=batch_size)
    elapsed = time.perf_counter() - t0
    no_hits = len(topics) - len(run)
    logger.info("searched %d queries in %.1f s (%.0f queries/s)", len(topics), elapsed,
                len(topics) / max(elapsed, 1e-9))
    if no_hits:
        logger.warning("%d of %d queries retrieved nothing (no query term in the index after analysis); "
                       "they are absent from the run and score 0 in evaluation", no_hits, len(topics))
    formats.write_run(out, run, tag=tag, depth=settings.depth)
    logger.info("wrote %s", out)
    return run


# ------------------------------------------------------------------------------------------------ CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m boostmdr.bm25", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--language", required=True, help="language code of the corpus/topics (e.g. sw)")
        sp.add_argument("--analyzer-language", default=None,
                        help="explicit analyzer for a language Anserini has none for (a supported code)")
        sp.add_argument("--threads", type=int, default=1, help="Lucene threads")
        sp.add_argument("--log", default=None, help="log file (the rule's log:)")

    ix = sub.add_parser("index", help="build a Lucene index of a prepared corpus")
    ix.add_argument("--corpus", required=True, help="results/data/LANG/corpus.jsonl")
    ix.add_argument("--index", required=True, help="index directory to create")
    common(ix)

    se = sub.add_parser("search", help="BM25 search of a topics file, written as a TREC run")
    se.add_argument("--index", required=True)
    se.add_argument("--topics", required=True, help="qid<TAB>query file")
    se.add_argument("--out", required=True, help="TREC run to write")
    d = BM25Settings()
    se.add_argument("--k1", type=float, default=d.k1)
    se.add_argument("--b", type=float, default=d.b)
    se.add_argument("--depth", type=int, default=d.depth, help="hits per query")
    se.add_argument("--tag", default="bm25", help="run tag (last TREC column)")
    se.add_argument("--batch-size", type=int, default=1000, help="queries per batch_search call")
    common(se)

    ls = sub.add_parser("languages", help="list the language codes with a Lucene analyzer and exit")
    ls.add_argument("--log", default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log)
    if args.command == "languages":
        for code, cls in lucene_analyzers().items():
            logger.info("%s\t%s", code, cls)
        return 0
    set_threads(args.threads)
    if args.command == "index":
        build_index(args.corpus, args.language, args.index, threads=args.threads,
                    analyzer_language=args.analyzer_language)
    else:
        settings = BM25Settings(k1=args.k1, b=args.b, depth=args.depth)
        search_topics(args.index, args.topics, args.language, settings, args.out, tag=args.tag,
                      threads=args.threads, batch_size=args.batch_size, analyzer_language=args.analyzer_language)
    return 0


if __name__ == "__main__":
    from boostmdr.cli import run

    run(main)
