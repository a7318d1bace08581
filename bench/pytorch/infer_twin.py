"""Decoding throughput of the PyTorch twin (python/transduce_torch: the model, greedy decoding), run by `Transduce.Bench infer` on the same source ids.

    python3 infer_twin.py --checkpoint DIR --sources SOURCES.jsonl --out RESULT.json --threads 2 \
        --modes greedy-incremental-b64,greedy-recompute-b64,beam4-incremental-b1,...

SOURCES.jsonl: one line per test sentence, {"ids": [source token ids, without <eos>], "max_len": N, "batch1": bool} —
N is the output limit Transduce used (it is recomputed here by the same rule and must agree); batch-1 modes decode
only the sentences marked "batch1" (they are slow).
Modes: {greedy|beamK}-{incremental|recompute}-b{B}. "incremental" carries the decoder state (key/value cache,
GRU hidden state); "recompute" (issue 5's "d2l way") re-runs the decoder over the whole prefix from a fresh state at
every step, as Transduce's RecomputePrefix does.
Greedy search (transduce_torch.generate) and the beam search here mirror src/Transduce/Inference/GreedySearch.cs and BeamSearch.cs step for step, so the tokens can be compared.
RESULT.json: {"torch", "threads", "blas", "modes": {mode: {"seconds", "sentences", "peak_rss_bytes", "outputs"}}}, outputs in
input order (of the batch-1 sentences for batch-1 modes), without <bos>/<eos>.
"""

import argparse
import ctypes
import gc
import json
import math
import os
import sys
import time

import torch

# The model and Translator's greedy decoding live in the package python/transduce_torch (used from the checkout).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from transduce_torch.checkpoint import load_checkpoint  # noqa: E402
from transduce_torch.generate import Limits, translate_ids  # noqa: E402
from transduce_torch.model import BOS_ID, EOS_ID, PAD_ID  # noqa: E402

NEG_INF = float("-inf")


# ------------------------------------------------------------------------------------------------ decoding helpers

class PrefixState:
    def __init__(self, encoded, valid_lengths, prefix):
        self.encoded, self.valid_lengths, self.prefix = encoded, valid_lengths, prefix


class RecomputePrefixDecoder:
    """No state carried between steps: each call re-runs the wrapped decoder over the whole prefix from a fresh
    init_state (the cross-attention keys/values included), as Transduce's RecomputePrefixDecoder does."""

    def __init__(self, inner):
        self.inner = inner

    def init_state(self, encoded, valid_lengths):
        return PrefixState(encoded, valid_lengths, None)

    def select_rows(self, s, indices):
        outputs, final = s.encoded
        encoded = (outputs.index_select(0, indices), None if final is None else final.index_select(1, indices))
        prefix = None if s.prefix is None else s.prefix.index_select(0, indices)
        return PrefixState(encoded, s.valid_lengths.index_select(0, indices), prefix)

    def __call__(self, target, s):
        prefix = target if s.prefix is None else torch.cat([s.prefix, target], 1)
        logits, _ = self.inner(prefix, self.inner.init_state(s.encoded, s.valid_lengths))
        return logits[:, prefix.shape[1] - target.shape[1]:], PrefixState(s.encoded, s.valid_lengths, prefix)


class Recompute:
    def __init__(self, model):
        self.encoder, self.decoder = model.encoder, RecomputePrefixDecoder(model.decoder)


class FixedLengthDecoder:
    """Transduce.Bench's FixedLengthDecoder: <eos> gets logit -inf until min_tokens tokens were emitted, so with the search's
    limit at the same number every output has exactly that length (synthetic models with random weights)."""

    def __init__(self, inner, min_tokens):
        self.inner, self.min_tokens = inner, min_tokens

    def init_state(self, encoded, valid_lengths):
        return self.inner.init_state(encoded, valid_lengths), 0

    def select_rows(self, s, indices):
        return self.inner.select_rows(s[0], indices), s[1]

    def __call__(self, target, s):
        logits, inner = self.inner(target, s[0])
        banned = max(0, min(self.min_tokens - s[1], target.shape[1]))
        if banned > 0:
            logits[:, :banned, EOS_ID] = NEG_INF
        return logits, (inner, s[1] + target.shape[1])


class FixedLength:
    def __init__(self, model, min_tokens):
        self.encoder, self.decoder = model.encoder, FixedLengthDecoder(model.decoder, min_tokens)


class Scoring:
    """BeamSearchOptions: length penalty lp(L) (L counts <eos>) and the stopping rule's parameters."""

    def __init__(self, beam, normalization, alpha, n_best=1):
        self.beam, self.normalization, self.alpha, self.n_best = beam, normalization, alpha, n_best

    @property
    def normalizes(self):
        return self.normalization != "none" and self.alpha != 0

    def penalty(self, length):
        if self.alpha == 0 or self.normalization == "none":
            return 1.0
        if self.normalization in ("d2l", "hugging_face"):
            return math.pow(length, self.alpha)
        if self.normalization == "gnmt":
            return math.pow((5.0 + length) / 6.0, self.alpha)
        raise ValueError(f"unknown length normalisation '{self.normalization}'")

    def is_done(self, finished, best_alive, max_length):
        if self.normalization == "hugging_face":
            return len(finished) >= self.beam
        if self.normalizes and len(finished) >= self.beam:
            return True
        if len(finished) < self.n_best:
            return False
        nth = sorted((h[1] for h in finished), reverse=True)[self.n_best - 1]
        bound = best_alive / self.penalty(max_length + 1) if self.normalizes else best_alive
        return nth >= bound


def beam_search(model, source, valid_lengths, max_lengths, banned, scoring):
    """BeamSearch.Invoke: k hypotheses per sentence as consecutive rows; the best 2k of k×V continuations are visited
    in order; an <eos> among the first k finishes a hypothesis; done sentences leave the batch. Returns the best
    hypothesis's tokens per sentence."""
    batch, k = source.shape[0], scoring.beam
    tokens = [[[] for _ in range(k)] for _ in range(batch)]
    scores = [[0.0] + [NEG_INF] * (k - 1) for _ in range(batch)]  # the k copies of <bos> are one hypothesis
    finished = [[] for _ in range(batch)]                          # (tokens, score, log-probability)
    active = list(range(batch))
    initial = model.decoder.init_state(model.encoder(source, valid_lengths), valid_lengths)
    state = model.decoder.select_rows(initial, torch.arange(batch * k, dtype=torch.int64) // k)
    hugging_face = scoring.normalization == "hugging_face"
    step = 0
    while active:
        n = len(active)
        last_tokens, flat_scores, forced = [], [], []
        for s in active:
            at_max = step >= max_lengths[s]
            for j in range(k):
                t = tokens[s][j]
                last_tokens.append(BOS_ID if step == 0 else t[-1] if t else PAD_ID)
                flat_scores.append(scores[s][j])
                forced.append(at_max)
        logits, decoded = model.decoder(torch.tensor(last_tokens, dtype=torch.int64).reshape(n * k, 1), state)
        log_probs = logits[:, -1].to(torch.float64).log_softmax(-1)
        vocab = log_probs.shape[1]
        if banned is not None:
            log_probs = log_probs.index_fill(1, banned, NEG_INF)
        if any(forced):
            row_mask = torch.tensor(forced).unsqueeze(1)
            not_eos = torch.arange(vocab, dtype=torch.int64).ne(EOS_ID).unsqueeze(0)
            log_probs = log_probs.masked_fill(row_mask.logical_and(not_eos), NEG_INF)
            if hugging_face:
                log_probs = log_probs.masked_fill(row_mask.logical_and(not_eos.logical_not()), 0.0)
        candidates = (torch.tensor(flat_scores, dtype=torch.float64).unsqueeze(1) + log_probs).reshape(n, k * vocab)
        width = min(2 * k, k * vocab)
        top_values, top_indices = candidates.topk(width, dim=1, largest=True, sorted=True)
        values, indices = top_values.tolist(), top_indices.tolist()

        next_active, parents = [], []
        for p, s in enumerate(active):
            new_tokens, new_scores, new_parents = [[] for _ in range(k)], [NEG_INF] * k, [p * k] * k
            alive = 0
            for c in range(width):
                if alive >= k:
                    break
                value = values[p][c]
                if value == NEG_INF:
                    break  # sorted: the rest are empty slots or forbidden tokens
                beam, token = divmod(indices[p][c], vocab)
                prefix = tokens[s][beam]
                if token == EOS_ID:
                    if c < k:
                        finished[s].append((prefix, value / scoring.penalty(len(prefix) + 1), value))
                    continue
                new_tokens[alive] = prefix + [token]
                new_scores[alive] = value
                new_parents[alive] = p * k + beam
                alive += 1
            tokens[s], scores[s] = new_tokens, new_scores
            if alive > 0 and not scoring.is_done(finished[s], new_scores[0], max_lengths[s]):
                next_active.append(s)
                parents.extend(new_parents)
        if next_active:
            state = model.decoder.select_rows(decoded, torch.tensor(parents, dtype=torch.int64))
        active = next_active
        step += 1

    best = []
    for s in range(batch):
        # Best by score, then log-probability (sorted() is stable, as LINQ's OrderBy).
        ranked = sorted(finished[s], key=lambda h: (-h[1], -h[2]))
        best.append(list(ranked[0][0]) if ranked else [])
    return best


# ------------------------------------------------------------------------------------------------ the benchmark

def reset_peak_rss():
    """Starts a new high-water mark from what is live: freed heap goes back to the system first (glibc keeps it),
    so a cheap mode does not inherit an expensive one's peak."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def blas_library():
    """The BLAS this torch build calls (Debian's torch uses whatever libblas.so.3 the system provides: the slow
    reference BLAS unless an optimised one such as libopenblas0-openmp is installed)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line and "/" in line}
    except OSError:
        return "unknown"
    named = sorted(p for p in paths if "openblas" in p or "mkl" in p or "blis" in p) or sorted(paths)
    return named[0] if named else "none loaded"


def parse_mode(mode):
    search, decoding, batch = mode.split("-")
    if search != "greedy" and not search.startswith("beam"):
        raise ValueError(f"unknown search in mode '{mode}'")
    if decoding not in ("incremental", "recompute") or not batch.startswith("b"):
        raise ValueError(f"malformed mode '{mode}' (expected greedy|beamK-incremental|recompute-bN)")
    return search, decoding, int(batch[1:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--sources", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--modes", required=True)
    parser.add_argument("--fixed-length", type=int, default=None,
                        help="every output exactly N tokens (<eos> banned until then; max_len must be N)")
    args = parser.parse_args()

    # Debian's torch starts with one thread whatever the machine has: set it, as Transduce's --threads does.
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint)
    config = model.checkpoint_config
    limits = Limits(config)
    generation = config.get("generation") or {}

    sentences, batch1 = [], []
    with open(args.sources, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            sentences.append(row["ids"])
            if row.get("batch1"):
                batch1.append(row["ids"])
            if args.fixed_length is not None:
                if row["max_len"] != args.fixed_length:
                    raise SystemExit(f"{args.sources}:{number}: max_len {row['max_len']} is not --fixed-length {args.fixed_length}")
            elif limits.max_output(len(row["ids"])) != row["max_len"]:
                raise SystemExit(f"{args.sources}:{number}: output limit {row['max_len']} differs from the twin's "
                                 f"{limits.max_output(len(row['ids']))}")

    results = {"torch": torch.__version__, "threads": torch.get_num_threads(), "modes": {}}
    with torch.inference_mode():
        for mode in args.modes.split(","):
            search, decoding, batch = parse_mode(mode)
            scoring = None if search == "greedy" else Scoring(
                int(search[4:]), generation.get("length_normalization", "gnmt"), float(generation.get("length_penalty", 1.0)))
            decoder = model if decoding == "incremental" else Recompute(model)
            if args.fixed_length is not None:
                decoder = FixedLength(decoder, args.fixed_length)
                limits.max_output = lambda _tokens: args.fixed_length
            rows = batch1 if batch == 1 else sentences
            # Warm-up as on the Transduce side: one batch's worth of sentences (three at batch 1), untimed.
            warm = rows[: max(1, min(len(rows), 3 if batch == 1 else batch))]
            decode = (lambda r: translate_ids(decoder, config, r, batch, limits=limits)) if search == "greedy" else \
                (lambda r: translate_ids(decoder, config, r, batch, search=beam_search, limits=limits, scoring=scoring))
            decode(warm)
            reset_peak_rss()
            start = time.perf_counter()
            outputs = decode(rows)
            seconds = time.perf_counter() - start
            results["modes"][mode] = {"seconds": seconds, "sentences": len(rows), "peak_rss_bytes": peak_rss(),
                                      "outputs": outputs}
            print(f"twin {mode}: {len(rows)} sentences in {seconds:.2f} s", file=sys.stderr, flush=True)
    results["blas"] = blas_library()  # after decoding, when every library torch needs is loaded
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
