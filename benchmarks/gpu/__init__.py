"""A prepared GPU check (issue 17): every GPU code path of the project, and the encoder's speed against
the chip's limit, in one short script that needs only PyTorch, transformers and their dependencies.

``PYTHONPATH=src python -m benchmarks.gpu --out gpu-check.json`` (or ``make gpu-check``) runs, on one
GPU in under five minutes:

==============================  ===========================================================================
``environment``                 versions, device, its published dense bf16 peak, enabled SDPA kernels
``matmul``                      one large bf16 GEMM: the rate the chip actually reaches
``encode-bert-base``            ``Encoder.encode_passages`` at the mBERT/mDPR shape: passages/s, tokens/s,
                                MFU, and what limits it (padding, kernels, batch size, attention, host)
``encode-xlmr-large``           the same at the mE5-large/BGE-M3 shape (goal: 40% MFU)
``train-bf16``                  ``torchrun ... -m boostmdr.train --bf16`` on the paper's batch: the loss
                                falls; groups/s, peak memory, MFU
``train-bf16-checkpointing``    the same with gradient checkpointing; weights match ``train-bf16``
``train-resume``                SIGKILL after a saved state, the same command again: same weights
``llm-judge``                   stage 1's ``judge_pairs`` on the ``transformers`` backend, batched
``llm-generate``                batched seeded sampling on the same backend, reproducible
``mift-lora``                   stage 2's LoRA instruction tuning through transformers' ``Trainer``, bf16
==============================  ===========================================================================

Each check is a registered function (:func:`benchmarks.gpu.core.register`); a failing one becomes a
failed row with its error and the next one runs. The table is printed at the end and the JSON report is
rewritten after every check. ``--device cpu --tiny`` runs every check with tiny shapes in about a minute
(the test suite does, so the script cannot rot). Models have random weights at the real backbones'
shapes, built from their configs; nothing is downloaded. See README.md, "Before the paper's matrix:
the GPU check".
"""
