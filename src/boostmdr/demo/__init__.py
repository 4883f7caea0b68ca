"""The demo wing: the synthetic benchmark and the tiny local stand-ins for real models.

The embedded default config runs the whole method on a synthetic benchmark in the raw MIRACL layout
(:mod:`~boostmdr.demo.synthetic`) with tiny models built on this machine: a tokenizer and small BERT
encoders (:mod:`~boostmdr.demo.tiny_models`), and a small Llama-style LM for the LLM steps
(:mod:`~boostmdr.demo.tiny_lm`, with the fixed token-overlap circuit of :mod:`~boostmdr.demo.tiny_circuit`).
They are saved in the Hugging Face layout, so every later step loads them through the same
``from_pretrained`` path a real model takes. Their rules are in ``rules/demo.smk``, included only when the
config uses the synthetic benchmark or a tiny model.

The method never imports this package (a test checks it): production code carries nothing that exists only
for the demo.
"""
