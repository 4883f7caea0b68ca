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

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any


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
