# Config access, validation, wildcard constraints and target lists. All Python the rules need lives here in
# named get_* functions; rule bodies stay declarative. Every value that changes a result reaches a rule through
# params:, so editing it reruns exactly what it touches.

import copy
import os
import re
import shlex

import yaml
from snakemake.utils import validate

from boostmdr.config import drop_removed

# An overlay (--configfile config/miracl.yaml) is deep-merged over config/config.yaml by Snakemake; a section or a
# named entry it sets to null is removed here, before validation (boostmdr.config explains the rule).
with open(os.path.join(workflow.basedir, "config", "schema.yaml"), encoding="utf-8") as _fh:
    SCHEMA = yaml.safe_load(_fh)
REMOVED_BY_OVERLAY = drop_removed(config, SCHEMA)

validate(config, schema="../config/schema.yaml")


class ConfigError(ValueError):
    """A config value the schema cannot check; the message names the key."""


def _merge(base, override):
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


LANGS = list(config["languages"])
DENSE = list(config["backbones"])
RETRIEVERS = ["bm25"] + DENSE
RAW = config["benchmark"]["raw_dir"]
SYNTHETIC = config["benchmark"]["name"] == "synthetic"
EVAL_SPLIT = config["benchmark"]["eval_split"]
VARIANTS = {name: _merge(config["variant_defaults"], v) for name, v in config["variants"].items()}
TINY_ENCODERS = list(config.get("tiny_models", {}).get("encoders", {}))
TINY_LMS = list(config.get("tiny_models", {}).get("causal_lms", {}))
# The demo wing's rules (rules/demo.smk) are included when the config uses the synthetic benchmark or a tiny model.
USES_DEMO = SYNTHETIC or any(
    str(spec["model"]).startswith("results/models/tiny/")
    for spec in [*config["backbones"].values(), *config["judges"].values()]
)

# Stages whose rules exist. A variant that needs a stage outside this set is listed (its DAG shape is in the
# config) but its table rows are printed as pending rather than built.
BUILT_STAGES = {"miners", "stage1"}


def _check_config():
    for name, v in VARIANTS.items():
        neg = v["negatives"]
        where = f"variants.{name}.negatives"
        if not v["finetune"]:
            continue
        if neg["method"] == "miner" and neg["miner"] not in config["miners"]:
            raise ConfigError(f"{where}.miner: {neg['miner']!r} is not a miner; choose one of {sorted(config['miners'])}")
        if neg["ensemble"] not in config["ensembles"]:
            raise ConfigError(f"{where}.ensemble: {neg['ensemble']!r} is not an ensemble; choose one of {sorted(config['ensembles'])}")
        if neg["judge"] is not None and neg["judge"] not in config["judges"]:
            raise ConfigError(f"{where}.judge: {neg['judge']!r} is not a judge; choose one of {sorted(config['judges'])} or null")
    for name, ens in config["ensembles"].items():
        for member in ens["members"]:
            if member not in RETRIEVERS:
                raise ConfigError(f"ensembles.{name}.members: {member!r} is not a retriever; choose from {RETRIEVERS}")
    if config["mining"]["retriever"] not in DENSE:
        raise ConfigError(f"mining.retriever: {config['mining']['retriever']!r} must be a dense backbone, one of {DENSE}")
    for name, spec in config["tables"].items():
        for row in _table_rows_raw(spec):
            if row["backbone"] not in RETRIEVERS:
                raise ConfigError(f"tables.{name}: backbone {row['backbone']!r} is not one of {RETRIEVERS}")
            if row["variant"] not in VARIANTS:
                raise ConfigError(f"tables.{name}: variant {row['variant']!r} is not one of {sorted(VARIANTS)}")
            backbone = config["backbones"].get(row["backbone"])
            if backbone is not None and VARIANTS[row["variant"]]["finetune"] and not backbone["finetune"]:
                raise ConfigError(
                    f"tables.{name}: row {row.get('label') or row['variant']!r} fine-tunes {row['backbone']!r}, but "
                    f"backbones.{row['backbone']}.finetune is false (it is evaluated zero-shot only)"
                )


def _table_rows_raw(spec):
    if spec.get("groups"):
        return [dict(row, backbone=g, group=g) for g in spec["groups"] for row in spec["group_rows"]]
    return spec.get("rows", [])


def _alt(values):
    return "|".join(re.escape(v) for v in values) if values else "(?!x)x"


wildcard_constraints:
    lang=_alt(LANGS),
    backbone=_alt(RETRIEVERS),
    dense=_alt(DENSE),
    retriever=_alt(RETRIEVERS),
    variant=_alt(list(VARIANTS)),
    miner=_alt(list(config["miners"])),
    ensemble=_alt(list(config["ensembles"])),
    judge=_alt(list(config["judges"]) + ["none"]),
    reference="positive|empty",
    keep=r"[0-2](-[0-2])*",
    shard=r"\d+",
    nshards=r"\d+",
    chunk=r"\d+",
    nchunks=r"\d+",
    table=_alt(list(config["tables"])),


# ------------------------------------------------------------------------------------------ resources


def res(step, key):
    """Portable resource ``key`` (threads, mem_mb, runtime, gpu) of a step, from config ``resources``."""
    spec = config["resources"].get(step, {})
    return spec.get(key, config["resources"]["default"][key])


def get_threads(step):
    return res(step, "threads")


# ------------------------------------------------------------------------------------------------ data


def raw_topics(lang, split):
    return f"{RAW}/miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-{split}.tsv"


def raw_qrels(lang, split):
    return f"{RAW}/miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv"


def raw_corpus(lang):
    return f"{RAW}/miracl-corpus-v1.0-{lang}"


def get_raw_inputs(wildcards):
    lang = wildcards.lang
    return {
        "train_topics": raw_topics(lang, "train"),
        "train_qrels": raw_qrels(lang, "train"),
        "eval_topics": raw_topics(lang, EVAL_SPLIT),
        "eval_qrels": raw_qrels(lang, EVAL_SPLIT),
        "corpus": raw_corpus(lang),
    }


def data(lang, name):
    return f"results/data/{lang}/{name}"


def num_shards(lang):
    shards = config["corpus_shards"]
    return int(shards.get(lang, shards["default"]))


# ---------------------------------------------------------------------------------------------- models


def model_path(backbone, variant):
    """Where the encoder of (backbone, variant) is: the base model for zero-shot, else our checkpoint."""
    if variant == "zeroshot":
        return config["backbones"][backbone]["model"]
    return f"results/models/{backbone}/{variant}"


def model_inputs(backbone, variant):
    """Files a step needs for the encoder: a model this workflow builds is an input; a hub id or an external
    path is loaded as it is (offline) and is not tracked."""
    path = model_path(backbone, variant)
    if path.startswith("results/models/"):
        return [f"{path}/model.safetensors"]
    return []


def get_model_inputs(wildcards):
    backbone = getattr(wildcards, "backbone", None) or getattr(wildcards, "dense", None) or wildcards.retriever
    return model_inputs(backbone, getattr(wildcards, "variant", "zeroshot"))


def encoder_settings(backbone):
    spec = config["backbones"][backbone]
    return {k: spec[k] for k in ("pooling", "normalize", "query_prefix", "passage_prefix", "q_max_len", "p_max_len")}


def encoder_flags(settings):
    """CLI flags of boostmdr's encoder settings (the same for encode, search, train)."""
    return " ".join(
        [
            f"--pooling {settings['pooling']}",
            "--normalize" if settings["normalize"] else "--no-normalize",
            f"--query-prefix={settings['query_prefix']!r}",
            f"--passage-prefix={settings['passage_prefix']!r}",
            f"--q-max-len {settings['q_max_len']}",
            f"--p-max-len {settings['p_max_len']}",
        ]
    )


def get_encoder_flags(wildcards):
    backbone = getattr(wildcards, "backbone", None) or getattr(wildcards, "dense", None) or wildcards.retriever
    return encoder_flags(encoder_settings(backbone))


def get_model_path(wildcards):
    backbone = getattr(wildcards, "backbone", None) or getattr(wildcards, "dense", None) or wildcards.retriever
    return model_path(backbone, getattr(wildcards, "variant", "zeroshot"))


def shard_files(backbone, variant, lang):
    n = num_shards(lang)
    return [f"results/index/{backbone}/{variant}/{lang}/shard-{i}-of-{n}.npz" for i in range(n)]


def get_shard_files(wildcards):
    backbone = getattr(wildcards, "backbone", None) or getattr(wildcards, "dense", None) or wildcards.retriever
    return shard_files(backbone, getattr(wildcards, "variant", "zeroshot"), wildcards.lang)


def bm25_analyzer(lang):
    return config["bm25"]["analyzer"].get(lang, lang)


# -------------------------------------------------------------------------------------------- LLMs

# The options of boostmdr.llm.options, split by whether they can change what the LLM writes. Each is a key of a
# judge's config entry with the same name (max_model_len <-> --max-model-len).
LLM_RESULT_OPTIONS = {"transformers": ("dtype",), "vllm": ("dtype", "max_model_len"), "http": ("endpoint",)}
LLM_RUN_OPTIONS = {
    "transformers": ("device", "max_batch_rows"),
    "vllm": ("tensor_parallel_size", "gpu_memory_utilization"),
    "http": ("base_url", "api_key_env", "concurrency", "timeout", "max_retries"),
}


def _llm_flags(spec, keys):
    flags = []
    for key in keys:
        if spec.get(key) is not None:
            flags.append(f"--{key.replace('_', '-')} {shlex.quote(str(spec[key]))}")
    return " ".join(flags)


def llm_result_flags(spec):
    """--backend, --model and the backend options that change outputs, from an LLM's config entry."""
    backend = spec["backend"]
    head = f"--backend {backend} --model {shlex.quote(spec['model'])}"
    rest = _llm_flags(spec, LLM_RESULT_OPTIONS[backend])
    return f"{head} {rest}".strip()


def llm_run_flags(spec):
    """The backend options that change only speed or where the model runs."""
    return _llm_flags(spec, LLM_RUN_OPTIONS[spec["backend"]])


# -------------------------------------------------------------------------------------------- variants


def variant(name):
    return VARIANTS[name]


def variant_stages(name):
    """The method stages a variant needs, used to decide whether its rows can be built yet."""
    v = VARIANTS[name]
    if not v["finetune"]:
        return set()
    neg, batching = v["negatives"], v["batching"]
    stages = set()
    if neg["method"] == "miner":
        stages.add("miners")
    else:
        stages.add("stage1")
        if neg["method"] == "ours" and neg["generation"]:
            stages.add("stage2")
    if batching["same_language"] or batching["topic_balance"] or batching["weights"] != "none":
        stages.add("stage3")
    return stages


STAGE_NAMES = {
    "miners": "hard-negative miners",
    "stage1": "stage 1 (ensemble + LLM judge)",
    "stage2": "stage 2 (LLM-aided generation)",
    "stage3": "stage 3 (language/topic batches and weights)",
}


def missing_stages(name):
    return sorted(variant_stages(name) - BUILT_STAGES)


def keep_tag(keep):
    return "-".join(str(k) for k in sorted(keep))


def stage1_pool(neg, lang):
    judge = neg["judge"] or "none"
    return f"results/stage1/pool/{neg['ensemble']}/{judge}/{neg['reference']}/keep-{keep_tag(neg['keep_verdicts'])}/{lang}.jsonl"


def negatives_file(variant_name, lang):
    """The negatives file a variant trains on, for one language. Its path holds only the settings that change
    it, so variants that share them share the file."""
    neg = VARIANTS[variant_name]["negatives"]
    if neg["method"] == "miner":
        return f"results/negatives/miners/{config['mining']['retriever']}/{neg['miner']}/{lang}.jsonl"
    if neg["method"] == "stage1":
        return stage1_pool(neg, lang)
    raise ConfigError(f"variants.{variant_name}: negatives.method 'ours' needs stage 2, which is not built yet")


# --------------------------------------------------------------------------------------------- targets


def table_rows(table):
    """Resolved rows of a table: label, backbone, variant, group, and why a row is pending (or None)."""
    rows = []
    for row in _table_rows_raw(config["tables"][table]):
        backbone, var = row["backbone"], row["variant"]
        label = row.get("label") or (
            config["backbones"][backbone]["label"] if backbone in config["backbones"] else backbone
        )
        missing = missing_stages(var)
        rows.append(
            {
                "label": label,
                "backbone": backbone,
                "variant": var,
                "group": config["backbones"][row["group"]]["label"] if row.get("group") else None,
                "pending": ("not yet built: " + ", ".join(STAGE_NAMES[s] for s in missing)) if missing else None,
            }
        )
    return rows


def eval_file(backbone, variant_name, lang):
    return f"results/eval/{backbone}/{variant_name}/{lang}.json"


def get_table_inputs(wildcards):
    return [
        eval_file(r["backbone"], r["variant"], lang)
        for r in table_rows(wildcards.table)
        if not r["pending"]
        for lang in LANGS
    ]


def get_table_params(wildcards):
    return {
        "title": config["tables"][wildcards.table]["title"],
        "metric": config["tables"][wildcards.table]["metric"],
        "languages": LANGS,
        "rows": table_rows(wildcards.table),
    }


def get_stage1_targets():
    if "stage1" not in BUILT_STAGES:
        return []
    return ["results/tables/elimination.md"] + (["results/tables/judge_quality.md"] if SYNTHETIC else [])


def get_final_targets():
    return [f"results/tables/{t}.md" for t in config["tables"]] + get_stage1_targets()


_check_config()
