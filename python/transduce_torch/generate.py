"""Greedy decoding of token ids, as Transduce's Translator does it (src/Transduce/Inference/Translator.cs, GreedySearch.cs).

No tokenizer lives here: sentences come in and go out as ids (Transduce tokenizes; `transduce translate` prints text).

    python3 -m transduce_torch.generate --checkpoint DIR --input SOURCES.jsonl [--output OUT.jsonl]

SOURCES.jsonl: one {"ids": [source ids without <eos>]} per line; OUT.jsonl: one {"ids": [output ids without <bos>/<eos>]}
per input line, in input order.
"""

import argparse
import json
import math
import sys

import torch

from .checkpoint import load_checkpoint
from .data import with_eos
from .model import BOS_ID, EOS_ID, PAD_ID

NEG_INF = float("-inf")


def greedy(model, source, valid_lengths, max_lengths, banned=None):
    """GreedySearch: feed <bos>, then each step's arg-max; a row stops at <eos> or at its maximum length."""
    batch = source.shape[0]
    outputs = [[] for _ in range(batch)]
    done = [False] * batch
    state = model.decoder.init_state(model.encoder(source, valid_lengths), valid_lengths)
    step_input = torch.full((batch, 1), BOS_ID, dtype=torch.int64, device=source.device)
    for _ in range(max(max_lengths) + 1):
        logits, state = model.decoder(step_input, state)
        last = logits[:, -1]
        if banned is not None:
            last = last.index_fill(1, banned, NEG_INF)
        best = last.argmax(-1).unsqueeze(1)
        every = True
        for i, token in enumerate(best.view(-1).tolist()):
            if done[i]:
                continue
            if token == EOS_ID or len(outputs[i]) >= max_lengths[i]:
                done[i] = True
            else:
                outputs[i].append(token)
            every = every and done[i]
        step_input = best
        if every:
            break
    return outputs


def source_tensors(rows, max_steps):
    """Batching.BuildSources: rows with <eos>, padded to the longest row."""
    rows = [with_eos(r, max_steps) for r in rows]
    steps = max(1, max(len(r) for r in rows))
    source = torch.tensor([r + [PAD_ID] * (steps - len(r)) for r in rows], dtype=torch.int64)
    return source, torch.tensor([max(1, len(r)) for r in rows], dtype=torch.int64)


class Limits:
    """Translator's rules: sources cut to min(text max_steps, max_positions); outputs at most
    min(max_positions − 1, ⌈2·(source tokens + 1)⌉ + 10) tokens, or max_new_tokens − 1 when the checkpoint sets it."""

    def __init__(self, config):
        model, text, generation = config["model"], config.get("text") or {}, config.get("generation") or {}
        positions = model.get("max_positions", 1024) if model["architecture"] == "transformer" else None
        cuts = [m for m in (text.get("max_steps"), positions) if m is not None]
        self.max_source_steps = min(cuts) if cuts else None
        self.cap = positions - 1 if positions is not None else sys.maxsize
        self.max_new_tokens = generation.get("max_new_tokens")

    def max_output(self, source_tokens):
        if self.max_new_tokens is not None:
            return min(self.cap, max(0, self.max_new_tokens - 1))
        return min(self.cap, math.ceil(2.0 * (source_tokens + 1)) + 10)


def banned_tokens(config):
    """The checkpoint's banned output ids as an index tensor (ids outside the vocabulary ignored), or None."""
    ids = sorted({t for t in (config.get("generation") or {}).get("banned_tokens") or []
                  if t < config["model"]["target_vocab_size"]})
    return torch.tensor(ids, dtype=torch.int64) if ids else None


def translate_ids(model, config, sentences, batch_size=64, search=greedy, limits=None, **search_args):
    """Translator.Run: sources sorted by length (stable), decoded in batches of batch_size, outputs in input order.
    config is the checkpoint's config.json; limits defaults to Limits(config); search(model, source, valid_lengths,
    max_lengths, banned, **search_args) decodes one batch."""
    limits, banned = limits or Limits(config), banned_tokens(config)
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    results = [None] * len(sentences)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        source, lengths = source_tensors([sentences[i] for i in chunk], limits.max_source_steps)
        max_lengths = [limits.max_output(len(sentences[i])) for i in chunk]
        for i, out in zip(chunk, search(model, source, lengths, max_lengths, banned, **search_args)):
            results[i] = out
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description="Greedy decoding of source ids with a Transduce checkpoint.")
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder (transduce train, or this package's trainer)")
    parser.add_argument("--input", required=True, help="JSON lines {\"ids\": [...]}")
    parser.add_argument("--output", help="JSON lines {\"ids\": [...]} (default: standard output)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint)
    sentences = []
    with open(args.input, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ids = json.loads(line)["ids"]
            except (ValueError, KeyError, TypeError):
                raise SystemExit(f"{args.input}:{number}: expected {{\"ids\": [...]}}") from None
            if any(not isinstance(t, int) or not 0 <= t < model.checkpoint_config["model"]["source_vocab_size"] for t in ids):
                raise SystemExit(f"{args.input}:{number}: ids must be integers inside the source vocabulary")
            sentences.append(ids)
    with torch.inference_mode():
        outputs = translate_ids(model, model.checkpoint_config, sentences, args.batch_size)
    lines = "".join(json.dumps({"ids": o}) + "\n" for o in outputs)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(lines)
    else:
        sys.stdout.write(lines)


if __name__ == "__main__":
    main()
