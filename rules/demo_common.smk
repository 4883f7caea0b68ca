# The demo wing's config access (included by rules/demo.smk): the tiny models' settings and what they are built for.


def _check_tiny_models():
    for backbone, spec in config["backbones"].items():
        model = spec["model"]
        if model.startswith("results/models/tiny/") and model.split("/")[3] not in TINY_ENCODERS:
            raise ConfigError(
                f"backbones.{backbone}.model: {model!r} is a tiny model path but "
                f"{model.split('/')[3]!r} is not in tiny_models.encoders ({TINY_ENCODERS})"
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


def _tiny_lm_judges(tiny, mode):
    path = tiny_model_dir(tiny)
    return [spec for spec in config["judges"].values() if spec["model"] == path and spec["mode"] == mode]


def get_tiny_lm_prompt(wildcards):
    """The prompt template of the pointwise judge(s) that use this tiny LM: it is fine-tuned on that prompt's format."""
    prompts = sorted({spec["prompt"] for spec in _tiny_lm_judges(wildcards.tiny, "pointwise")})
    if len(prompts) > 1:
        raise ConfigError(f"pointwise judges using {tiny_model_dir(wildcards.tiny)} have different prompts {prompts}; give each its own tiny LM")
    return prompts[0] if prompts else "config/prompts/judge.txt"


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
