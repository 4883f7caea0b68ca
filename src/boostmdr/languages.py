"""Language names and translation-model language codes for the languages the workflow knows.

* :data:`LANGUAGE_NAMES`: the English name of each language, what the stage-2 prompts put in their
  ``{language}`` placeholder (the authors' prompts say "The following text is in {language_name}").
* :data:`CODE_SCHEMES`: how a translation model names a language.
  ``flores200`` is NLLB-200's (FLORES-200 codes, script included: ``swh_Latn``, ``tel_Telu``; English source
  ``eng_Latn``); ``m2m100`` is M2M100's (ISO 639-1 codes written as the tokens ``__sw__``; M2M100 has no
  Telugu); ``none`` is a model that translates one fixed pair and needs no code (Marian's opus-mt-en-XX,
  named per language with ``{lang}`` in the model id).

The codes are checked against the vocabulary of the tokenizer when a translation starts, so a code a model
does not know (``te`` for M2M100) fails at once with the language and the fix, not after hours of work.
"""

from __future__ import annotations

LANGUAGE_NAMES: dict[str, str] = {
    "ar": "Arabic", "bn": "Bengali", "de": "German", "en": "English", "es": "Spanish", "fa": "Persian",
    "fi": "Finnish", "fr": "French", "hi": "Hindi", "id": "Indonesian", "ja": "Japanese", "ko": "Korean",
    "ru": "Russian", "sw": "Swahili", "te": "Telugu", "th": "Thai", "yo": "Yoruba", "zh": "Chinese",
}  # fmt: skip
"""MIRACL's 18 language codes -> English name."""

FLORES200: dict[str, str] = {
    "ar": "arb_Arab", "bn": "ben_Beng", "de": "deu_Latn", "en": "eng_Latn", "es": "spa_Latn", "fa": "pes_Arab",
    "fi": "fin_Latn", "fr": "fra_Latn", "hi": "hin_Deva", "id": "ind_Latn", "ja": "jpn_Jpan", "ko": "kor_Hang",
    "ru": "rus_Cyrl", "sw": "swh_Latn", "te": "tel_Telu", "th": "tha_Thai", "yo": "yor_Latn", "zh": "zho_Hans",
}  # fmt: skip
"""MIRACL language code -> NLLB-200 (FLORES-200) code."""

CODE_SCHEMES = ("flores200", "m2m100", "none")


def language_name(lang: str) -> str:
    """The English name of ``lang``; an unknown code is an error listing the known ones."""
    try:
        return LANGUAGE_NAMES[lang]
    except KeyError:
        raise ValueError(f"no language name for code {lang!r}; known codes: {', '.join(sorted(LANGUAGE_NAMES))}") from None


def model_language_token(lang: str, scheme: str, overrides: dict[str, str] | None = None) -> str | None:
    """The token a translation model of ``scheme`` uses for ``lang`` (``None`` for scheme ``none``).

    ``overrides`` maps a language code to the model's code for it (the config's ``codes``), for models with
    other codes than the built-in tables.
    """
    if scheme not in CODE_SCHEMES:
        raise ValueError(f"language code scheme {scheme!r}: choose one of {', '.join(CODE_SCHEMES)}")
    if scheme == "none":
        return None
    code = (overrides or {}).get(lang)
    if code is None:
        if scheme == "flores200":
            code = FLORES200.get(lang)
            if code is None:
                raise ValueError(f"no FLORES-200 code for {lang!r}; give it under the translation setting 'codes'")
        else:
            code = lang
    return code if scheme == "flores200" else f"__{code}__"
