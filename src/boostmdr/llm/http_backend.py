"""Any OpenAI-compatible HTTP endpoint: vLLM's server, ``transformers serve``, a hosted API.

* **API**: ``/completions`` (the prompt as is; default, works with ``transformers serve`` and vLLM) or
  ``/chat/completions`` (the prompt as one user message, for chat-only APIs). ``base_url`` ends with
  the API version, e.g. ``http://127.0.0.1:8000/v1``.
* **One HTTP request per sample**: the samples of a prompt differ in temperature and top-p, and the
  ``n`` parameter shares one setting (``transformers serve`` ignores ``n`` anyway). A server with
  prefix caching (vLLM) prefills the shared prompt once; otherwise each sample pays a prefill, which the
  token accounting shows (``prefilled_tokens`` = prompt tokens minus what the server reports cached).
* **Structured output**: a request's JSON-schema constraint (:mod:`boostmdr.llm.constraint`) is sent as the
  OpenAI-compatible ``response_format`` ``{"type": "json_schema", "json_schema": {"name", "schema",
  "strict": true}}`` (vLLM's server and hosted APIs honour it; ``transformers serve`` refuses the field on
  ``/v1/completions`` with HTTP 422 and ignores it on ``/v1/chat/completions``). Choice and regex
  constraints have no OpenAI-compatible field and are refused.
* **Key**: read from the environment variable NAMED by ``api_key_env`` (default ``OPENAI_API_KEY``)
  when the backend is built; it may be absent for a local server. It is sent only in the
  ``Authorization`` header, never logged, never part of :meth:`describe` or any output.
* **Robustness**: ``concurrency`` requests in flight (a thread pool over one connection pool); each
  request has a ``timeout``; 408/409/429/5xx answers and connection errors are retried up to
  ``max_retries`` times with exponential backoff (``backoff`` x 2^attempt, capped at ``max_backoff``,
  with jitter; a ``Retry-After`` header is honoured). Other errors fail at once with the status and the
  server's message.

``transformers serve DIR --host 127.0.0.1 --port P`` pins the model to ``DIR``: send ``model`` = the
same string. It applies ``temperature``/``top_p`` only when the model's generation config samples
(``do_sample=True``, as :mod:`boostmdr.demo.tiny_lm` saves it) and seeds its global torch generator per
request, so with concurrency > 1 its samples are not reproducible.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from boostmdr.llm.base import (
    Backend,
    BackendError,
    GenerationRequest,
    GenerationResult,
    SamplingSettings,
)
from boostmdr.llm.constraint import Constraint

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
ENDPOINTS = {"completions": "/completions", "chat": "/chat/completions"}


class HTTPBackend(Backend):
    NAME = "http"
    INSTALL_HINT = "pip install httpx (in the project's environment: `make install`)"
    REQUIRES = ("httpx",)
    CONSTRAINTS = ("json",)

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        endpoint: str = "completions",
        concurrency: int = 4,
        timeout: float = 120.0,
        max_retries: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        send_seed: bool = True,
    ) -> None:
        import httpx

        if api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):
            # never echo the value: it is probably the key itself
            raise ValueError(
                "http backend: --api-key-env must be the NAME of the environment variable that holds the key "
                "(letters, digits, _); the value given is not one (not shown, in case it is the key itself)"
            )
        if endpoint not in ENDPOINTS:
            raise ValueError(f"http backend: endpoint must be one of {sorted(ENDPOINTS)}, got {endpoint!r}")
        if concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError("http backend: concurrency >= 1, max_retries >= 0 and timeout > 0 are required")
        self._httpx = httpx
        self._model = model
        self.base_url = base_url.rstrip("/")
        self.endpoint = endpoint
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.send_seed = send_seed
        key = os.environ.get(api_key_env) if api_key_env else None
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        else:
            log.info("http backend: no API key in $%s; sending requests without one (fine for a local server)", api_key_env)
        self._has_key = bool(key)
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="llm-http")
        self._closed = False
        self._lock = threading.Lock()
        self.retries_done = 0
        # httpx logs every request at INFO; keep our logs about the work, not the wire.
        logging.getLogger("httpx").setLevel(logging.WARNING)

    @property
    def model_id(self) -> str:
        return self._model

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "base_url": self.base_url,
            "endpoint": self.endpoint,
            "api_key_env": self.api_key_env,
            "api_key_set": self._has_key,
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._client.close()

    # -------------------------------------------------------------------------------------- requests

    def payload(self, prompt: str, s: SamplingSettings, constraint: Constraint | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self._model, "max_tokens": s.max_tokens, "temperature": s.temperature, "top_p": s.top_p}
        if self.send_seed:
            body["seed"] = s.seed
        if constraint is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": constraint.schema, "strict": True},
            }
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return body

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        httpx = self._httpx
        url = self.base_url + ENDPOINTS[self.endpoint]
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                resp = self._client.post(url, json=body)
            except httpx.TransportError as err:  # connection refused/reset, timeouts
                problem = f"{type(err).__name__}: {err}"
            else:
                if resp.status_code == 200:
                    try:
                        return resp.json()
                    except ValueError:
                        problem = f"answer is not JSON: {resp.text[:200]!r}"
                elif resp.status_code in RETRY_STATUS:
                    problem = f"HTTP {resp.status_code}: {resp.text[:200]}"
                    retry_after = _retry_after(resp.headers.get("retry-after"))
                else:
                    raise BackendError(
                        f"http backend: POST {url} answered HTTP {resp.status_code}: {resp.text[:500]} "
                        f"(model {self._model!r}; check --model, --base-url and the key in ${self.api_key_env})"
                    )
            if attempt >= self.max_retries:
                raise BackendError(f"http backend: POST {url} failed after {attempt + 1} attempts: {problem}")
            delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
            if retry_after is not None:
                delay = min(self.max_backoff, max(delay, retry_after))
            log.warning("http backend: %s; retry %d/%d in %.1f s", problem, attempt + 1, self.max_retries, delay)
            with self._lock:
                self.retries_done += 1
            time.sleep(delay)
            attempt += 1

    def _sample(self, prompt: str, s: SamplingSettings, constraint: Constraint | None = None) -> tuple[str, int, int, int]:
        """One sample: (text, prompt tokens, cached prompt tokens, generated tokens)."""
        data = self._post(self.payload(prompt, s, constraint))
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if self.endpoint == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"http backend: unexpected answer from {self.base_url}: {str(data)[:300]}") from None
        usage = data.get("usage") or {}
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        return text or "", int(usage.get("prompt_tokens") or 0), int(cached), int(usage.get("completion_tokens") or 0)

    def iter_generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        if self._closed:
            raise BackendError("http backend is closed")
        self.check_constraints(req.constraint for req in requests)
        pending: dict[Future, tuple[int, int]] = {}
        parts: list[list[tuple[str, int, int, int] | None]] = [[None] * len(r.samples) for r in requests]
        left = [len(r.samples) for r in requests]
        for i, req in enumerate(requests):
            for j, s in enumerate(req.samples):
                pending[self._pool.submit(self._sample, req.prompt, s, req.constraint)] = (i, j)
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i, j = pending.pop(fut)
                    parts[i][j] = fut.result()
                    left[i] -= 1
                    if left[i] == 0:
                        got = [p for p in parts[i] if p is not None]
                        yield i, GenerationResult(
                            texts=[p[0] for p in got],
                            prompt_tokens=max(p[1] for p in got),
                            prefilled_tokens=sum(p[1] - p[2] for p in got),
                            generated_tokens=sum(p[3] for p in got),
                            extra={"cached_prompt_tokens": sum(p[2] for p in got)},
                        )
        finally:
            for fut in pending:
                fut.cancel()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
