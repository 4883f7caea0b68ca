# The demo wing's config access (included by rules/demo.smk): the tiny models' settings and what they are built for.


def _check_tiny_models():
    for name, spec in config.get("generators", {}).items():
        model = spec["model"]
        lm = config["tiny_models"]["causal_lms"].get(os.path.basename(model), {})
        if model.startswith("results/models/tiny/") and lm.get("task") != "generator":
            raise ConfigError(
                f"generators.{name}.model: {model!r} is not a tiny causal LM with task: generator in tiny_models.causal_lms"
            )
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


def get_max_planted(wildcards):
    planted = config["benchmark"]["synthetic"]["max_planted"]
    return int(planted.get(wildcards.lang, planted["default"]))


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


def _tiny_lm_judges(tiny, mode):
    path = tiny_model_dir(tiny)
    return [spec for spec in config["judges"].values() if spec["model"] == path and spec["mode"] == mode]


def get_tiny_lm_prompt(wildcards):
    """The prompt template of the pointwise judge(s) that use this tiny LM: it is fine-tuned on that prompt's format."""
    prompts = sorted({spec["prompt"] for spec in _tiny_lm_judges(wildcards.tiny, "pointwise")})
    if len(prompts) > 1:
        raise ConfigError(f"pointwise judges using {tiny_model_dir(wildcards.tiny)} have different prompts {prompts}; give each its own tiny LM")
    return prompts[0] if prompts else "config/prompts/judge.txt"


def synthetic_instructions_file(kind, lang):
    """The demo's MIFT instruction set: source.en.jsonl (English) or translated.{lang}.jsonl."""
    return f"{RAW}/synthetic-instructions/{kind}.{lang}.jsonl"


def _generator_texts(path):
    """The instruction files and prompt templates of the generators that use the tiny LM at ``path``: its
    tokenizer learns their text too."""
    instructions, prompts = set(), set()
    for spec in config.get("generators", {}).values():
        if spec["model"] != path:
            continue
        prompts.update(spec["prompts"].values())
        m = spec["mift"]
        instructions.add(m["instructions"])
        if m["translation"]["kind"] == "files":
            instructions.update(m["translation"]["files"].replace("{lang}", lang) for lang in LANGS)
    return sorted(instructions), sorted(prompts)


def get_tiny_lm_inputs(wildcards):
    if get_tiny_lm_params(wildcards)["task"] == "generator":
        instructions, prompts = _generator_texts(tiny_model_dir(wildcards.tiny))
        return {"corpora": all_corpora(), "instructions": instructions, "prompts": prompts}
    return {
        "corpora": all_corpora(),
        "train": get_train_files(wildcards),
        "prompt": get_tiny_lm_prompt(wildcards),
        "holdout": get_holdout_files(wildcards),
        "listwise": get_tiny_lm_listwise_inputs(wildcards),
    }


def get_tiny_lm_flags(wildcards, input):
    """judge: the tokenizer corpus, the training data, the judge prompt, the held-out queries and the listwise
    format; generator: the tokenizer corpus (corpora and instruction files) and the prompt templates."""
    if get_tiny_lm_params(wildcards)["task"] == "generator":
        corpus = " ".join([*input.corpora, *input.instructions])
        return f"--corpus {corpus} --extra-text {' '.join(input.prompts)}"
    return (
        f"--corpus {' '.join(input.corpora)} --train {' '.join(input.train)} --prompt {input.prompt}"
        f" --holdout {' '.join(input.holdout)} {get_tiny_lm_listwise_flags(wildcards, input)}"
    )


def get_tiny_lm_listwise_inputs(wildcards):
    """The listwise template the tiny LM also learns (issue 16), when a listwise judge uses it and it has listwise steps."""
    judges = _tiny_lm_judges(wildcards.tiny, "listwise")
    if not judges or not config["tiny_models"]["causal_lms"][wildcards.tiny]["listwise_steps"]:
        return []
    prompts = sorted({spec["prompt"] for spec in judges})
    if len(prompts) > 1:
        raise ConfigError(f"listwise judges using {tiny_model_dir(wildcards.tiny)} have different prompts {prompts}; give each its own tiny LM")
    return prompts


def get_tiny_lm_listwise_flags(wildcards, input):
    """--listwise-prompt, --listwise-steps and --listwise-window (the largest window of its listwise judges)."""
    if not input.listwise:
        return ""
    steps = config["tiny_models"]["causal_lms"][wildcards.tiny]["listwise_steps"]
    window = max(spec["window"] for spec in _tiny_lm_judges(wildcards.tiny, "listwise"))
    return f"--listwise-prompt {input.listwise} --listwise-steps {steps} --listwise-window {window}"


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
