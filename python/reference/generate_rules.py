#!/usr/bin/python3
"""Reference vectors for the decoding rules of transformers' `generate` on a MarianMT folder.

An independent re-implementation, written from the transformers 5 source (models/marian, generation/utils.py,
generation/logits_process.py), in plain PyTorch (Debian's python3-torch works): MarianMT's forward pass and greedy /
beam search with the logits processors the generation settings turn on (repetition penalty, no repeated n-gram, bad
words of one or several tokens, minimum length / new tokens, forced BOS, forced EOS at the length limit), in
transformers' order. Greedy search applies them to the raw logits, beam search to the log-softmax scores; the
`input_ids` they see start with the decoder start token.

    /usr/bin/python3 python/reference/generate_rules.py ../shared/testdata/marian-tiny OUT.json

First checks that it reproduces the folder's expected.json (greedy_ids, beam4_ids), then writes one case per setting.
"""
import json
import math
import struct
import sys

import torch

NEG = float("-inf")


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", name
        a, b = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(info["shape"]).clone()
    return out


class Marian:
    """MarianMT: post-norm layers, scaled embeddings, sinusoidal positions (sines then cosines), final_logits_bias."""

    def __init__(self, folder):
        self.cfg = json.load(open(f"{folder}/config.json"))
        self.w = load_safetensors(f"{folder}/model.safetensors")
        c = self.cfg
        self.d = c["d_model"]
        self.heads = c["encoder_attention_heads"]
        self.scale = math.sqrt(self.d) if c.get("scale_embedding", False) else 1.0
        self.pos = self.sinusoids(c["max_position_embeddings"], self.d)
        act = c.get("activation_function", "gelu")
        self.act = {"swish": torch.nn.functional.silu, "silu": torch.nn.functional.silu,
                    "gelu": torch.nn.functional.gelu, "relu": torch.relu}[act]

    @staticmethod
    def sinusoids(n, d):
        # angle(pos, j) = pos / 10000^(2j/d); first half of the columns sin, second half cos
        position = torch.arange(n, dtype=torch.float64).unsqueeze(1)
        j = torch.arange(d // 2, dtype=torch.float64)
        angle = position / torch.pow(10000.0, 2 * j / d)
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1).float()

    def lin(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def norm(self, x, name):
        return torch.nn.functional.layer_norm(x, (self.d,), self.w[name + ".weight"], self.w[name + ".bias"], 1e-5)

    def attention(self, x, kv, name, mask):
        b, t, _ = x.shape
        s = kv.shape[1]
        hd = self.d // self.heads
        q = (self.lin(x, name + ".q_proj") * hd ** -0.5).view(b, t, self.heads, hd).transpose(1, 2)
        k = self.lin(kv, name + ".k_proj").view(b, s, self.heads, hd).transpose(1, 2)
        v = self.lin(kv, name + ".v_proj").view(b, s, self.heads, hd).transpose(1, 2)
        scores = q @ k.transpose(-1, -2)
        scores = scores.masked_fill(~mask, torch.finfo(torch.float32).min)
        out = torch.softmax(scores, dim=-1) @ v
        return self.lin(out.transpose(1, 2).reshape(b, t, self.d), name + ".out_proj")

    def embed(self, ids):
        return self.w["model.shared.weight"][ids] * self.scale + self.pos[: ids.shape[1]]

    def encode(self, ids, attention_mask):
        h = self.embed(ids)
        mask = attention_mask.bool()[:, None, None, :]
        for i in range(self.cfg["encoder_layers"]):
            p = f"model.encoder.layers.{i}"
            h = self.norm(h + self.attention(h, h, p + ".self_attn", mask), p + ".self_attn_layer_norm")
            h = self.norm(h + self.lin(self.act(self.lin(h, p + ".fc1")), p + ".fc2"), p + ".final_layer_norm")
        return h

    def next_logits(self, enc, attention_mask, decoder_ids):
        """Logits of the next token after each row of decoder_ids (the whole prefix is recomputed: no cache)."""
        h = self.embed(decoder_ids)
        t = decoder_ids.shape[1]
        causal = torch.tril(torch.ones(t, t, dtype=torch.bool))[None, None]
        cross = attention_mask.bool()[:, None, None, :]
        for i in range(self.cfg["decoder_layers"]):
            p = f"model.decoder.layers.{i}"
            h = self.norm(h + self.attention(h, h, p + ".self_attn", causal), p + ".self_attn_layer_norm")
            h = self.norm(h + self.attention(h, enc, p + ".encoder_attn", cross), p + ".encoder_attn_layer_norm")
            h = self.norm(h + self.lin(self.act(self.lin(h, p + ".fc1")), p + ".fc2"), p + ".final_layer_norm")
        head = self.w.get("lm_head.weight", self.w["model.shared.weight"])
        return h[:, -1] @ head.T + self.w["final_logits_bias"][0]


# ---- the logits processors, each as transformers defines it; input_ids: (rows, cur_len) starting with the start token

def repetition_penalty(penalty):
    def apply(input_ids, scores):
        picked = torch.gather(scores, 1, input_ids)
        picked = torch.where(picked < 0, picked * penalty, picked / penalty)
        return scores.scatter(1, input_ids, picked)
    return apply


def no_repeat_ngram(n):
    def apply(input_ids, scores):
        cur_len = input_ids.shape[1]
        scores = scores.clone()
        if cur_len + 1 < n:
            return scores
        for r, row in enumerate(input_ids.tolist()):
            ngrams = {}
            for i in range(len(row) - n + 1):
                ngrams.setdefault(tuple(row[i:i + n - 1]), []).append(row[i + n - 1])
            banned = ngrams.get(tuple(row[cur_len + 1 - n:cur_len]), [])
            scores[r, banned] = NEG
        return scores
    return apply


def bad_words(words, eos):
    words = [w for w in words if w != [eos]]

    def apply(input_ids, scores):
        bias = torch.zeros_like(scores)
        for w in words:
            if len(w) == 1:
                bias[:, w[0]] = NEG
                continue
            if len(w) > input_ids.shape[1]:
                continue
            match = (input_ids[:, -(len(w) - 1):] == torch.tensor(w[:-1])).all(dim=1)
            bias[match, w[-1]] = NEG
        return scores + bias
    return apply


def min_length(m, eos):
    def apply(input_ids, scores):
        if input_ids.shape[1] < m:
            scores = scores.clone()
            scores[:, eos] = NEG
        return scores
    return apply


def min_new_tokens(m, eos, prompt=1):
    return lambda input_ids, scores: min_length(m + prompt, eos)(input_ids, scores)


def forced_bos(token):
    def apply(input_ids, scores):
        if input_ids.shape[1] == 1:
            scores = torch.full_like(scores, NEG)
            scores[:, token] = 0
        return scores
    return apply


def forced_eos(max_length, eos):
    def apply(input_ids, scores):
        if input_ids.shape[1] == max_length - 1:
            scores = torch.full_like(scores, NEG)
            scores[:, eos] = 0
        return scores
    return apply


def processors(g, max_length, eos):
    """generate's list for the settings g, in transformers' order."""
    out = []
    if g.get("repetition_penalty", 1.0) != 1.0:
        out.append(repetition_penalty(g["repetition_penalty"]))
    if g.get("no_repeat_ngram_size", 0) > 0:
        out.append(no_repeat_ngram(g["no_repeat_ngram_size"]))
    if g.get("bad_words_ids"):
        out.append(bad_words(g["bad_words_ids"], eos))
    min_len = g.get("min_length", 0)
    if g.get("min_new_tokens") is not None:
        min_len = g["min_new_tokens"] + 1
    if min_len > 0:
        out.append(min_length(min_len, eos))
    if g.get("min_new_tokens"):
        out.append(min_new_tokens(g["min_new_tokens"], eos))
    if g.get("forced_bos_token_id") is not None:
        out.append(forced_bos(g["forced_bos_token_id"]))
    if g.get("forced_eos_token_id") is not None:
        out.append(forced_eos(max_length, g["forced_eos_token_id"]))
    return out


def run(rules, input_ids, scores):
    for rule in rules:
        scores = rule(input_ids, scores)
    return scores


def greedy(model, ids, mask, g):
    start, eos, pad = g["decoder_start_token_id"], g["eos_token_id"], g["pad_token_id"]
    max_length = g["max_new_tokens"] + 1
    rules = processors(g, max_length, eos)
    enc = model.encode(ids, mask)
    seqs = torch.full((ids.shape[0], 1), start, dtype=torch.long)
    unfinished = torch.ones(ids.shape[0], dtype=torch.bool)
    while seqs.shape[1] < max_length and unfinished.any():
        scores = run(rules, seqs, model.next_logits(enc, mask, seqs))
        nxt = scores.argmax(-1)
        nxt = torch.where(unfinished, nxt, torch.tensor(pad))
        seqs = torch.cat([seqs, nxt[:, None]], 1)
        unfinished &= nxt != eos
    return seqs.tolist()


def beam(model, ids, mask, g, k):
    """Beam search as transformers runs it: log-softmax, then the processors, then the running sum; the best 2k of the
    k × V continuations; an <eos> among the first k finishes a hypothesis (score / generated_length^α, <eos> counted);
    at the step that reaches max_length every one of the first k finishes, <eos> or not (MaxLengthCriteria: without
    forced_eos_token_id a hypothesis may end there without <eos>, scored at that length); early_stopping True / False /
    "never" as _check_early_stop_heuristic and _beam_search_has_unfinished_sequences decide."""
    start, eos = g["decoder_start_token_id"], g["eos_token_id"]
    max_length = g["max_new_tokens"] + 1
    alpha = g.get("length_penalty", 1.0)
    early = g.get("early_stopping", False)
    rules = processors(g, max_length, eos)
    results = []
    for b in range(ids.shape[0]):
        enc = model.encode(ids[b:b + 1], mask[b:b + 1]).expand(k, -1, -1)
        m = mask[b:b + 1].expand(k, -1)
        seqs = torch.full((k, 1), start, dtype=torch.long)
        beam_scores = torch.tensor([0.0] + [-1e9] * (k - 1))
        finished = []  # (score, sum log-prob, tokens)
        while True:
            cur_len = seqs.shape[1]
            logp = torch.log_softmax(model.next_logits(enc, m, seqs), -1)
            logp = run(rules, seqs, logp)
            total = (logp + beam_scores[:, None]).view(-1)
            vocab = logp.shape[1]
            values, flat = total.topk(2 * k)
            last = cur_len + 1 >= max_length
            next_seqs, next_scores = [], []
            for rank, (value, index) in enumerate(zip(values.tolist(), flat.tolist())):
                parent, token = divmod(index, vocab)
                if token == eos or last:
                    if rank < k:
                        generated = cur_len  # tokens after the start token, the new one (<eos> or not) included
                        tokens = seqs[parent, 1:].tolist() + ([] if token == eos else [token])
                        finished.append((value / generated ** alpha, value, tokens))
                    continue
                next_seqs.append(seqs[parent].tolist() + [token])
                next_scores.append(value)
                if len(next_seqs) == k:
                    break
            if last:
                break
            seqs = torch.tensor(next_seqs)
            beam_scores = torch.tensor(next_scores)
            running = seqs.shape[1] - 1  # tokens the running beams hold now
            done = False
            if len(finished) >= k:
                if early is True:
                    done = True
                else:
                    length = max_length - 1 if early == "never" and alpha > 0 else running
                    worst = sorted((f[0] for f in finished), reverse=True)[k - 1]
                    done = worst >= max(next_scores) / length ** alpha
            if done or seqs.shape[1] >= max_length:
                break
        best = sorted(finished, key=lambda f: -f[0])[0]
        results.append(best[2])
    return results


def main():
    folder, out = sys.argv[1], sys.argv[2]
    torch.set_grad_enabled(False)
    expected = json.load(open(f"{folder}/expected.json"))
    model = Marian(folder)
    ids = torch.tensor(expected["input_ids"])
    mask = torch.tensor(expected["attention_mask"])
    cfg = model.cfg
    base = {"decoder_start_token_id": cfg["decoder_start_token_id"], "eos_token_id": cfg["eos_token_id"],
            "pad_token_id": cfg["pad_token_id"], "forced_eos_token_id": cfg["forced_eos_token_id"], "max_new_tokens": 24}
    eos = cfg["eos_token_id"]

    def strip(row):  # generated tokens without the start token, cut before <eos>
        row = row[1:]
        return row[:row.index(eos)] if eos in row else row

    assert [strip(r) for r in greedy(model, ids, mask, base)] == [strip(r) for r in expected["greedy_ids"]], "greedy differs from expected.json"
    beams = beam(model, ids, mask, dict(base, early_stopping=True), 4)
    assert beams == [strip(r) for r in expected["beam4_ids"]], "beam 4 differs from expected.json"
    print("reproduces expected.json: greedy_ids and beam4_ids", file=sys.stderr)

    cases = [
        ("no_repeat_ngram_2", {"no_repeat_ngram_size": 2}),
        ("no_repeat_ngram_3", {"no_repeat_ngram_size": 3}),
        ("repetition_penalty_1.3", {"repetition_penalty": 1.3}),
        ("repetition_penalty_3", {"repetition_penalty": 3.0}),
        ("bad_words_multi", {"bad_words_ids": [[285, 285], [527, 527], [1074]]}),
        ("min_length_12", {"min_length": 12, "max_new_tokens": 16}),
        ("min_new_tokens_9_no_repeat_2", {"min_new_tokens": 9, "no_repeat_ngram_size": 2, "max_new_tokens": 12}),
        ("forced_bos_17_penalty_1.3", {"forced_bos_token_id": 17, "repetition_penalty": 1.3}),
        # No forced_eos_token_id (as T5): outputs stop at max_new_tokens without <eos>, beams are finished there.
        ("no_forced_eos_6", {"forced_eos_token_id": None, "max_new_tokens": 6}),
        ("no_forced_eos_6_length_penalty_2", {"forced_eos_token_id": None, "max_new_tokens": 6, "length_penalty": 2.0}),
        ("no_forced_eos_min_new_tokens_5", {"forced_eos_token_id": None, "max_new_tokens": 5, "min_new_tokens": 5}),
    ]
    result = {"generator": "python/reference/generate_rules.py (independent PyTorch re-implementation of MarianMT "
                            "and generate's logits processors, from transformers 5 source)",
              "torch_version": torch.__version__, "folder": "marian-tiny", "cases": []}
    for name, settings in cases:
        g = dict(base, **settings)
        case = {"name": name, "generation_config": {k: v for k, v in g.items()}}
        case["greedy"] = [strip(r) for r in greedy(model, ids, mask, g)]
        for mode, key in [(True, "beam4_true"), (False, "beam4_false"), ("never", "beam4_never")]:
            case[key] = beam(model, ids, mask, dict(g, early_stopping=mode), 4)
        result["cases"].append(case)
        print(name, case["greedy"][0][:10], case["beam4_true"][0][:10], file=sys.stderr)
    with open(out, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
