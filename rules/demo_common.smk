# The demo wing's config access (included by rules/demo.smk): the tiny models' settings and what they are built for.


def _check_tiny_models():
    for backbone, spec in config["backbones"].items():
        model = spec["model"]
        if model.startswith("results/models/tiny/") and model.split("/")[3] not in TINY_ENCODERS:
            raise ConfigError(
                f"backbones.{backbone}.model: {model!r} is a tiny model path but "
                f"{model.split('/')[3]!r} is not in tiny_models.encoders ({TINY_ENCODERS})"
            )
    for name, spec in config["topics"]["classifiers"].items():
        if spec["model"].startswith("results/models/tiny/") and spec["model"] != tiny_fasttext_file(name, "bin"):
            raise ConfigError(
                f"topics.classifiers.{name}.model: a demo classifier is built at {tiny_fasttext_file(name, 'bin')} "
                f"(from tiny_models.topic_classifiers.{name}), not {spec['model']!r}"
            )
        if spec["model"].startswith("results/models/tiny/") and name not in TINY_FASTTEXT:
            raise ConfigError(
                f"topics.classifiers.{name}.model: {spec['model']!r} is a demo classifier but tiny_models.topic_classifiers "
                f"has no entry {name!r} ({TINY_FASTTEXT})"
            )


_check_tiny_models()

TOKENIZER = tiny_model_dir("tokenizer")


def get_synthetic_params(wildcards):
    return config["benchmark"]["synthetic"]


def get_tiny_encoder_params(wildcards):
    return config["tiny_models"]["encoders"][wildcards.tiny]


def get_tiny_encoder_flags(wildcards):
    """A tiny encoder is built with the encoder settings of the backbone(s) that use it, so its saved
    boostmdr_encoder.json agrees with how the workflow encodes with it."""
    path = tiny_model_dir(wildcards.tiny)
    users = {b: encoder_settings(b) for b, spec in config["backbones"].items() if spec["model"] == path}
    distinct = {tuple(sorted(s.items())) for s in users.values()}
    if len(distinct) > 1:
        raise ConfigError(f"backbones {sorted(users)} share {path} but disagree on encoder settings; give each its own tiny model")
    return encoder_flags(next(iter(users.values()))) if users else ""


def get_tiny_lm_prompt(wildcards):
    """The prompt template of the judge(s) that use this tiny LM: it is fine-tuned on that prompt's format."""
    path = tiny_model_dir(wildcards.tiny)
    prompts = sorted({spec["prompt"] for spec in config["judges"].values() if spec["model"] == path})
    if len(prompts) > 1:
        raise ConfigError(f"judges using {path} have different prompts {prompts}; give each its own tiny LM")
    return prompts[0] if prompts else "config/prompts/judge.txt"


def get_tiny_lm_params(wildcards):
    return config["tiny_models"]["causal_lms"][wildcards.tiny]


def get_train_files(wildcards):
    return [data(lang, "train.jsonl") for lang in LANGS]


def get_tiny_fasttext_params(wildcards):
    """A demo classifier's fastText settings and the class names of the topics classifier it stands in for (their
    order is the official numbering the model answers in)."""
    spec = config["tiny_models"]["topic_classifiers"][wildcards.classifier]  # the schema's defaults filled in
    labels = config["topics"]["classifiers"][wildcards.classifier]["labels"]
    return {**spec, "labels": " ".join(shlex.quote(label) for label in labels)}


def get_doc_topics_flags(wildcards):
    return " ".join(f"{lang}={doc_topics_file(lang)}" for lang in LANGS)
