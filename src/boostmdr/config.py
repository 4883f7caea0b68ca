"""The workflow's configuration as data: how an overlay combines with the default, and what the schema says.

The Snakefile reads ``config/config.yaml`` (the embedded default); every ``--configfile`` given on the
command line is deep-merged over it by Snakemake: a mapping merges key by key, any other value replaces.
An overlay such as ``config/miracl.yaml`` therefore holds only what differs. To take something out of the
default, an overlay sets it to ``null``: :func:`drop_removed` deletes every key whose value is ``null``
where the schema does not allow ``null`` (a section such as ``tiny_models``, a named entry such as
``variants.pool_n50``), before the config is validated. Where ``null`` is a meaningful value (a variant's
``judge: null`` is "w/o LLM judgment"), it stays.

:func:`schema_defaults` lists the default of every setting the schema documents, so tests can check that
the schema and the library agree on them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key (and never echoes a secret)."""


def _resolve(node: Mapping[str, Any] | None, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local ``$ref`` (``#/$defs/name``) to the node it names."""
    seen = 0
    while node is not None and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local schema references are supported, got {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
        seen += 1
        if seen > 32:
            raise ValueError(f"schema reference loop at {ref!r}")
    return node or {}


def child_schema(node: Mapping[str, Any], key: str, root: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The schema of ``key`` inside an object schema ``node`` (``properties``, else ``additionalProperties``)."""
    node = _resolve(node, root)
    props = node.get("properties", {})
    if key in props:
        return _resolve(props[key], root)
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping):
        return _resolve(extra, root)
    return None


def accepts_null(node: Mapping[str, Any] | None) -> bool:
    """Whether a (resolved) schema node allows ``null``."""
    if node is None:
        return False
    kind = node.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(accepts_null(alt) for alt in node.get("anyOf", []) + node.get("oneOf", []))


def drop_removed(config: MutableMapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Delete, in place, every key set to ``null`` where the schema does not allow ``null``; returns the
    dotted names of the deleted keys (an overlay's way of removing a section or a named entry)."""
    removed: list[str] = []

    def walk(cfg: MutableMapping[str, Any], node: Mapping[str, Any], where: str) -> None:
        for key in list(cfg):
            sub = child_schema(node, key, schema)
            name = f"{where}.{key}" if where else str(key)
            if cfg[key] is None and not accepts_null(sub):
                del cfg[key]
                removed.append(name)
            elif isinstance(cfg[key], MutableMapping) and sub is not None:
                walk(cfg[key], sub, name)

    walk(config, schema, "")
    return removed


def schema_defaults(schema: Mapping[str, Any], node: Mapping[str, Any] | None = None, where: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, default)`` for every property with a ``default`` in an object schema, recursively
    (named entries such as ``judges.<name>`` appear as ``judges.*``)."""
    node = _resolve(schema if node is None else node, schema)
    for key, sub in node.get("properties", {}).items():
        sub = _resolve(sub, schema)
        name = f"{where}.{key}" if where else key
        if "default" in sub:
            yield name, sub["default"]
        yield from schema_defaults(schema, sub, name)
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping):
        yield from schema_defaults(schema, _resolve(extra, schema), f"{where}.*" if where else "*")


# ------------------------------------------------------------------------------------------- checks
# Everything the schema cannot say, checked when the workflow starts (before Snakemake deletes any output), each
# error naming the config key.

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _looks_like_a_key(value: str) -> bool:
    """A value that is probably a credential itself: a known key prefix, or a long run of mixed characters."""
    if value.startswith(("sk-", "sk_", "hf_", "AKIA", "ghp_", "xoxb-", "Bearer ")):
        return True
    return len(value) >= 24 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _walk(tree: Any, where: str = "") -> Iterator[tuple[str, str, Any]]:
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            name = f"{where}.{key}" if where else str(key)
            yield name, str(key), value
            yield from _walk(value, name)


def check_env_names(config: Mapping[str, Any]) -> None:
    """Every ``api_key_env`` holds the NAME of an environment variable, never a key. Checked before the schema,
    whose error message would print the value."""
    for name, key, value in _walk(config):
        if key != "api_key_env" or value is None:
            continue
        if not isinstance(value, str) or not ENV_NAME.fullmatch(value):
            why = (
                "it looks like a key itself: put the key in an environment variable (export MY_KEY=...) and write "
                "that variable's NAME here"
                if isinstance(value, str) and _looks_like_a_key(value)
                else "write the name of the environment variable that holds the key (letters, digits, _), e.g. OPENAI_API_KEY"
            )
            raise ConfigError(f"{name}: not an environment variable name (value not shown); {why}")


def check_schema(config: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Validate against the schema and report the most relevant error in one line naming the key, instead of
    the validator's dump of the schema and the whole config."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    message = error.message
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        if allowed:
            message += f"; allowed keys: {', '.join(allowed)}"
    raise ConfigError(f"config key {where}: {message} (config/schema.yaml documents every key)")


def check_language_keys(config: Mapping[str, Any]) -> None:
    """Per-language settings name only languages of the run (a typo would otherwise do nothing)."""
    languages = set(config["languages"])
    for section, allowed in (("corpus_shards", languages | {"default"}), ("bm25.analyzer", languages)):
        node: Any = config
        for part in section.split("."):
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        unknown = sorted(set(node) - allowed)
        if unknown:
            raise ConfigError(
                f"{section}: {', '.join(map(repr, unknown))} is not a language of this run ({', '.join(config['languages'])})"
            )


def check_resources(config: Mapping[str, Any], rules: Iterable[str]) -> None:
    """``resources`` names only rules of the workflow (or ``default``)."""
    rules = set(rules)
    unknown = sorted(set(config["resources"]) - rules - {"default"})
    if unknown:
        raise ConfigError(
            f"resources: {', '.join(map(repr, unknown))} is not a rule of this workflow; rules: {', '.join(sorted(rules))}"
        )


def is_path_like(model: str) -> bool:
    """A model named by a path rather than a hub id (``org/name``): absolute, relative with ./ or ../, ~, or
    with more than one '/'."""
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1


def check_model(where: str, model: str) -> None:
    """A model given by a local path must exist (a hub id is loaded from the Hugging Face cache, offline)."""
    if model.startswith("results/"):
        return  # built by the workflow
    if is_path_like(model) and not Path(os.path.expanduser(model)).exists():
        raise ConfigError(f"{where}: {model!r} looks like a local path but does not exist")


def check_llm_entry(where: str, spec: Mapping[str, Any], placeholders: Iterable[str]) -> None:
    """An LLM's entry (a judge): the backend has what it needs, sampling pairs are in range, the prompt
    template has every placeholder the step needs, a local model path exists."""
    from boostmdr.llm.prompt import PromptTemplate, TemplateError

    if spec["backend"] == "http" and not spec.get("base_url"):
        raise ConfigError(f"{where}.base_url: the http backend needs the server's URL, e.g. http://127.0.0.1:8000/v1")
    for i, pair in enumerate(spec.get("samples", [])):
        top_p, temperature = pair
        if not 0 < top_p <= 1 or temperature < 0:
            raise ConfigError(
                f"{where}.samples[{i}]: {list(pair)} is not [top_p, temperature] with 0 < top_p <= 1 and temperature >= 0"
            )
    prompt = spec.get("prompt")
    if prompt:
        if not Path(prompt).is_file():
            raise ConfigError(f"{where}.prompt: {prompt!r} is not a file")
        try:
            PromptTemplate.load(prompt, tuple(placeholders))
        except TemplateError as err:
            raise ConfigError(f"{where}.prompt: {err}") from None
    if spec["backend"] != "http":
        check_model(f"{where}.model", spec["model"])
