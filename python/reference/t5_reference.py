#!/usr/bin/env python3
"""Tiny T5 / Flan-T5 folders and what transformers would compute with them, by an independent PyTorch re-implementation.

Written from the source of Hugging Face transformers (models/t5/modeling_t5.py, configuration_t5.py,
tokenization_t5.py with legacy=True, generation/utils.py), without transformers itself (not installed here):
  * the tokenizer: SentencePiece (spm_encode / spm_decode of the Debian `sentencepiece` package) on the text between
    special tokens; `<extra_id_N>` sentinels written in the text are single tokens (id = tokenizer size - 1 - N) that
    strip the whitespace beside them; `</s>` appended; decode(skip_special_tokens=True) drops pad, eos, unk, sentinels;
  * T5ForConditionalGeneration's forward: RMS norm in float32, unscaled attention, bucketed relative position biases
    (bidirectional in the encoder, causal in the decoder) computed by the first block and shared, relu or gated-gelu
    (gelu_new) feed-forwards, no biases, output * d_model^-0.5 before a tied lm_head;
  * generate: greedy, and beam search (num_beams 4, length_penalty 1, early_stopping true / false / "never") as the
    vectorised beam search of transformers 5 scores and stops it. T5 has no forced_eos_token_id, so at the length limit
    (MaxLengthCriteria) greedy keeps max_new_tokens tokens without </s>, and every one of the best num_beams candidates
    of the last step becomes a finished hypothesis, </s> or not, scored by its log-probability / max_new_tokens^lp.

Writes tests/Transduce.Tests/Import/T5/testdata/spiece.model (shared) and {t5-tiny,flan-t5-tiny}/ : config.json,
generation_config.json, model.safetensors (t5-tiny also pytorch_model.bin), tokenizer_config.json,
special_tokens_map.json, expected.json.
Run with /usr/bin/python3 (Debian's python3-torch 1.13) from the repository root; `--extra` writes only
tokenizer-nonlegacy.json (T5Tokenizer with legacy=False, add_prefix_space true and false) over the committed spiece.model.
"""
import json, math, os, struct, subprocess, sys, tempfile, re
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "Transduce.Tests", "Import", "T5", "testdata")
EXTRA_IDS = 100
PAD, EOS, UNK = 0, 1, 2
MAX_NEW = 20
SHORT_NEW = 4  # a second, small max_new_tokens: most outputs reach the limit without </s>

CORPUS = """translate English to German: The house is wonderful.
translate English to German: I like the small garden behind the house.
translate English to French: Where is the station?
summarize: The weather was cold and the children stayed at home all day.
Das Haus ist wunderbar. Ich mag den kleinen Garten hinter dem Haus.
Où est la gare ? Le temps était froid et les enfants sont restés à la maison.
The quick brown fox jumps over the lazy dog.
She sells sea shells by the sea shore, and the shells she sells are surely sea shells.
A model reads a sentence and writes another one, token by token, until it writes the end.
cola sentence: The books is on the table.
stsb sentence1: A man plays a guitar. sentence2: A man is playing music.
question: What colour is the sky? context: The sky is blue on a clear day.
Numbers like 12, 345 and 6789 appear in text, as do dates such as 2024-05-17.
Zürich, Köln and Genève have letters that English rarely uses.
""" * 3

SENTENCES = [
    "translate English to German: The house is wonderful.",
    "translate English to German: I like the small garden.",
    "summarize: The weather was cold.",
    "Where is the station?",
    "The <extra_id_0> walks in <extra_id_1> park",
    "  spaces   around  words  ",
    "Zürich ✓ unknown ☃ symbols",
    "",
    "question: What colour is the sky?",
    "A model reads a sentence and writes another one, token by token.",
]

# More tokenizer cases: special tokens written in the text (with and without spaces beside them), a trailing </s>.
TOKENIZER_CASES = SENTENCES + [
    "a<extra_id_0>b", "x <pad> y <unk>z", "Hello</s>", "<extra_id_99> at the start", "two  <extra_id_5>  <extra_id_6>  sentinels",
    "<extra_id_100> is not a sentinel", "</s></s>",
]


def spm(args, text):
    return subprocess.run(args, input=text, capture_output=True, text=True, check=True).stdout


class Tokenizer:
    """T5Tokenizer (legacy=True) over a SentencePiece model, through the spm command-line tools."""

    def __init__(self, model):
        self.model = model
        vocab = spm(["spm_export_vocab", "--model", model], "")
        self.pieces = [line.split("\t")[0] for line in vocab.splitlines()]
        self.size = len(self.pieces) + EXTRA_IDS
        self.special = {"</s>": EOS, "<pad>": PAD, "<unk>": UNK}
        for i in range(EXTRA_IDS):
            self.special[f"<extra_id_{i}>"] = self.size - 1 - i

    def encode_chunk(self, text):
        if text == "":
            return []
        out = spm(["spm_encode", "--model", self.model, "--output_format=id"], text + "\n")
        return [int(x) for x in out.split()]

    def encode(self, text):
        ids = self.encode_raw(text)
        return ids if ids[-1:] == [EOS] else ids + [EOS]  # _add_eos_if_not_present

    def encode_raw(self, text):
        # Split on special tokens (longest first); sentinels strip the whitespace on both sides (lstrip/rstrip=True).
        names = sorted(self.special, key=len, reverse=True)
        parts = re.split("(" + "|".join(re.escape(n) for n in names) + ")", text)
        for i, part in enumerate(parts):
            if part in self.special and part.startswith("<extra_id_"):
                if i > 0: parts[i - 1] = parts[i - 1].rstrip()
                if i + 1 < len(parts): parts[i + 1] = parts[i + 1].lstrip()
        ids = []
        for part in parts:
            if part in self.special:
                ids.append(self.special[part])
            elif part:
                ids.extend(self.encode_chunk(part))
        return ids

    def decode(self, ids):
        keep = [i for i in ids if i not in (PAD, EOS, UNK) and i < len(self.pieces)]
        if not keep:
            return ""
        pieces = " ".join(self.pieces[i] for i in keep)
        return spm(["spm_decode", "--model", self.model, "--input_format=piece"], pieces + "\n").rstrip("\n").strip()


# ---------------------------------------------------------------- the model, as modeling_t5.py computes it
def rms(x, w, eps):
    var = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def bucket(relative, buckets, max_distance, bidirectional):
    result = torch.zeros_like(relative)
    if bidirectional:
        buckets //= 2
        result += (relative > 0).to(torch.long) * buckets
        relative = torch.abs(relative)
    else:
        relative = -torch.min(relative, torch.zeros_like(relative))
    max_exact = buckets // 2
    small = relative < max_exact
    large = max_exact + (torch.log(relative.float() / max_exact) / math.log(max_distance / max_exact) * (buckets - max_exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, buckets - 1))
    return result + torch.where(small, relative, large)


def bias(table, qstart, q, k, cfg, bidirectional):
    ctx = torch.arange(qstart, qstart + q, dtype=torch.long)[:, None]
    mem = torch.arange(k, dtype=torch.long)[None, :]
    b = bucket(mem - ctx, cfg["relative_attention_num_buckets"], cfg["relative_attention_max_distance"], bidirectional)
    return table[b].permute(2, 0, 1).unsqueeze(0)


def attention(W, p, x, kv, extra, cfg):
    H, D = cfg["num_heads"], cfg["d_kv"]
    b, q = x.shape[:2]
    k = kv.shape[1]
    Q = (x @ W[p + "q.weight"].T).view(b, q, H, D).transpose(1, 2)
    K = (kv @ W[p + "k.weight"].T).view(b, k, H, D).transpose(1, 2)
    V = (kv @ W[p + "v.weight"].T).view(b, k, H, D).transpose(1, 2)
    scores = Q @ K.transpose(-1, -2) + extra
    weights = torch.softmax(scores.float(), dim=-1).type_as(scores)
    out = (weights @ V).transpose(1, 2).reshape(b, q, H * D)
    return out @ W[p + "o.weight"].T


def ffn(W, p, x, cfg):
    if cfg["feed_forward_proj"] == "gated-gelu":
        g = x @ W[p + "wi_0.weight"].T
        g = 0.5 * g * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (g + 0.044715 * torch.pow(g, 3.0))))
        h = g * (x @ W[p + "wi_1.weight"].T)
    else:
        h = torch.relu(x @ W[p + "wi.weight"].T)
    return h @ W[p + "wo.weight"].T


MIN = torch.finfo(torch.float32).min


def encode(W, cfg, ids, mask):
    eps = cfg["layer_norm_epsilon"]
    h = W["shared.weight"][ids]
    n = ids.shape[1]
    extra = bias(W["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"], 0, n, n, cfg, True)
    extra = extra + (1.0 - mask[:, None, None, :].float()) * MIN
    for i in range(cfg["num_layers"]):
        p = f"encoder.block.{i}.layer."
        h = h + attention(W, p + "0.SelfAttention.", rms(h, W[p + "0.layer_norm.weight"], eps), rms(h, W[p + "0.layer_norm.weight"], eps), extra, cfg)
        h = h + ffn(W, p + "1.DenseReluDense.", rms(h, W[p + "1.layer_norm.weight"], eps), cfg)
    return rms(h, W["encoder.final_layer_norm.weight"], eps)


def decode(W, cfg, memory, mask, tokens, hidden=False):
    """Logits (batch, steps, vocab) of teacher-forced decoder inputs `tokens` (the whole prefix is recomputed)."""
    eps = cfg["layer_norm_epsilon"]
    h = W["shared.weight"][tokens]
    n = tokens.shape[1]
    causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
    self_extra = bias(W["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"], 0, n, n, cfg, False)
    self_extra = self_extra + (~causal)[None, None].float() * MIN
    cross_extra = (1.0 - mask[:, None, None, :].float()) * MIN
    for i in range(cfg["num_decoder_layers"]):
        p = f"decoder.block.{i}.layer."
        x = rms(h, W[p + "0.layer_norm.weight"], eps)
        h = h + attention(W, p + "0.SelfAttention.", x, x, self_extra, cfg)
        h = h + attention(W, p + "1.EncDecAttention.", rms(h, W[p + "1.layer_norm.weight"], eps), memory, cross_extra, cfg)
        h = h + ffn(W, p + "2.DenseReluDense.", rms(h, W[p + "2.layer_norm.weight"], eps), cfg)
    h = rms(h, W["decoder.final_layer_norm.weight"], eps)
    if cfg["tie_word_embeddings"]:
        h = h * cfg["d_model"] ** -0.5
    if hidden:
        return h
    if cfg["tie_word_embeddings"]:
        return h @ W["shared.weight"].T
    return h @ W["lm_head.weight"].T


# ---------------------------------------------------------------- generate
def greedy(W, cfg, memory, mask, max_new=MAX_NEW):
    tokens = [PAD]
    for _ in range(max_new):
        logits = decode(W, cfg, memory, mask, torch.tensor([tokens]))[0, -1]
        t = int(torch.argmax(logits))
        tokens.append(t)
        if t == EOS:
            break
    return tokens[1:]


def beam(W, cfg, memory, mask, k, early_stopping, lp=1.0, max_new=MAX_NEW):
    """One sentence. Returns (tokens without the start token, normalised score, finished before the limit).

    Per step, as _beam_search: the best 2k continuations by summed log-probability; of them, the first k that end (</s>,
    or any token once the sequence reaches max_length) are scored by sum / generated_length^lp (generated_length: the
    tokens after the decoder start, the new one included) and merged into the k best finished ones — unless
    early_stopping is True and k had finished before this step; the best k that do not end run on. After the step the
    search stops when no running beam can improve (the heuristic of _check_early_stop_heuristic), when k have finished
    under early_stopping True, or at max_length."""
    max_length = max_new + 1
    running = [([PAD], 0.0)]
    finished = []  # (score, tokens)
    memory_k = memory.expand(k, -1, -1)
    cur_len = 1
    while True:
        seqs = torch.tensor([r[0] for r in running])
        logits = decode(W, cfg, memory_k[: len(running)], mask.expand(len(running), -1), seqs)[:, -1].float()
        logp = torch.log_softmax(logits, dim=-1)
        scores = logp + torch.tensor([r[1] for r in running])[:, None]
        flat = scores.reshape(-1)
        top = torch.topk(flat, 2 * k)
        V = logp.shape[-1]
        last = cur_len + 1 == max_length
        new_running = []
        # transformers blocks new finished hypotheses when the k slots were full before this step (is_sent_finished).
        full_before = len(finished) >= k
        for rank, (score, index) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
            b, t = divmod(index, V)
            seq = running[b][0] + [t]
            if (t == EOS or last) and rank < k:
                if not (early_stopping is True and full_before):
                    finished.append((score / ((cur_len + 1 - 1) ** lp), seq[1:]))
                    finished.sort(key=lambda f: -f[0])
                    del finished[k:]
            elif t != EOS and len(new_running) < k:
                new_running.append((seq, score))
        running = new_running
        cur_len += 1
        full = len(finished) >= k
        if early_stopping == "never" and lp > 0:
            length = max_length - 1
        else:
            length = cur_len - 1
        best_possible = running[0][1] / (length ** lp)
        improvable = not full or best_possible > finished[-1][0]
        open_beam = not (full and early_stopping is True)
        if not (improvable and open_beam and cur_len < max_length):
            break
    score, tokens = finished[0]
    reached_limit = tokens[-1] != EOS
    return [t for t in tokens if True], score, not reached_limit


# ---------------------------------------------------------------- folders
def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        data = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def make_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    d, H, D, F, V = cfg["d_model"], cfg["num_heads"], cfg["d_kv"], cfg["d_ff"], cfg["vocab_size"]
    def n(*shape, std):
        return torch.randn(*shape, generator=g) * std
    W = {"shared.weight": n(V, d, std=1.0)}
    pieces = cfg["pieces"]
    W["shared.weight"][pieces:] *= 0.3  # sentinels and unused rows: rarely the best output of a random model
    gated = cfg["feed_forward_proj"] == "gated-gelu"
    for side, layers in (("encoder", cfg["num_layers"]), ("decoder", cfg["num_decoder_layers"])):
        attns = ["SelfAttention"] if side == "encoder" else ["SelfAttention", "EncDecAttention"]
        for i in range(layers):
            p = f"{side}.block.{i}.layer."
            for j, a in enumerate(attns):
                W[f"{p}{j}.{a}.q.weight"] = n(H * D, d, std=(d * D) ** -0.5 * 2)
                W[f"{p}{j}.{a}.k.weight"] = n(H * D, d, std=d ** -0.5)
                W[f"{p}{j}.{a}.v.weight"] = n(H * D, d, std=d ** -0.5)
                W[f"{p}{j}.{a}.o.weight"] = n(d, H * D, std=(H * D) ** -0.5 * 4)
                if i == 0 and a == "SelfAttention":
                    W[f"{p}{j}.{a}.relative_attention_bias.weight"] = n(cfg["relative_attention_num_buckets"], H, std=1.0)
                W[f"{p}{j}.layer_norm.weight"] = 0.5 + torch.rand(d, generator=g)
            f = len(attns)
            if gated:
                W[f"{p}{f}.DenseReluDense.wi_0.weight"] = n(F, d, std=d ** -0.5)
                W[f"{p}{f}.DenseReluDense.wi_1.weight"] = n(F, d, std=d ** -0.5)
            else:
                W[f"{p}{f}.DenseReluDense.wi.weight"] = n(F, d, std=d ** -0.5)
            W[f"{p}{f}.DenseReluDense.wo.weight"] = n(d, F, std=F ** -0.5 * 4)
            W[f"{p}{f}.layer_norm.weight"] = 0.5 + torch.rand(d, generator=g)
        W[f"{side}.final_layer_norm.weight"] = 0.5 + torch.rand(d, generator=g)
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = n(V, d, std=d ** -0.5 * 3)
        W["lm_head.weight"][pieces:] *= 0.3
    return W


def tune_eos(W, cfg, batches, tok):
    """Raises the end token's output row along the mean decoder output so that greedy outputs end after a few tokens."""
    row_name = "shared.weight" if cfg["tie_word_embeddings"] else "lm_head.weight"
    base = W[row_name][EOS].clone()
    ids, mask = batches
    memory = encode(W, cfg, ids, mask)
    # The mean final decoder state (what multiplies the output rows) over a few greedy steps of every sentence.
    states = []
    for r in range(ids.shape[0]):
        seq = greedy(W, cfg, memory[r : r + 1], mask[r : r + 1])[:8]
        states.append(decode(W, cfg, memory[r : r + 1], mask[r : r + 1], torch.tensor([[PAD] + seq]), hidden=True)[0])
    mean = torch.cat(states).mean(0)
    direction = mean / mean.norm() ** 2  # raises the end token's logit by about beta at the mean state
    best = None
    for beta in [x / 10 for x in range(0, 60)]:
        W[row_name][EOS] = base + beta * direction
        m = encode(W, cfg, ids, mask)
        lengths = [len(greedy(W, cfg, m[r : r + 1], mask[r : r + 1])) for r in range(ids.shape[0])]
        # The most sentences that end with </s> after at least two tokens (random weights: not every one will).
        good = sum(2 <= l < MAX_NEW for l in lengths)
        if best is None or good > best[0]:
            best = (good, beta, lengths)
    W[row_name][EOS] = base + best[1] * direction
    return best[1], best[2]


def build(name, cfg, seed, spm_model):
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    tok = Tokenizer(spm_model)
    assert cfg["vocab_size"] >= tok.size
    W = make_weights(cfg, seed)
    encoded = [tok.encode(s) for s in SENTENCES]
    n = max(len(e) for e in encoded)
    ids = torch.tensor([e + [PAD] * (n - len(e)) for e in encoded])
    mask = torch.tensor([[1] * len(e) + [0] * (n - len(e)) for e in encoded])
    beta, lengths = tune_eos(W, cfg, (ids, mask), tok)
    memory = encode(W, cfg, ids, mask)
    greedy_ids = [greedy(W, cfg, memory[r : r + 1], mask[r : r + 1]) for r in range(len(SENTENCES))]
    beams = {}
    for mode, key in ((True, "true"), (False, "false"), ("never", "never")):
        results = [beam(W, cfg, memory[r : r + 1], mask[r : r + 1], 4, mode) for r in range(len(SENTENCES))]
        beams[key] = {"ids": [r[0] for r in results], "scores": [r[1] for r in results], "finished": [r[2] for r in results]}
    # The same at a small limit, where most hypotheses are cut there without </s>.
    short_greedy = [greedy(W, cfg, memory[r : r + 1], mask[r : r + 1], SHORT_NEW) for r in range(len(SENTENCES))]
    short_beams = {}
    for mode, key in ((True, "true"), (False, "false"), ("never", "never")):
        results = [beam(W, cfg, memory[r : r + 1], mask[r : r + 1], 4, mode, max_new=SHORT_NEW) for r in range(len(SENTENCES))]
        short_beams[key] = {"ids": [r[0] for r in results], "scores": [r[1] for r in results], "finished": [r[2] for r in results]}
    # First-step logits of every sentence and the whole teacher-forced logits of sentence 0 along its greedy output.
    start = torch.full((len(SENTENCES), 1), PAD)
    first_logits = decode(W, cfg, memory, mask, start)[:, 0]
    forced = torch.tensor([[PAD] + greedy_ids[0]])
    forced_logits = decode(W, cfg, memory[:1], mask[:1], forced)[0]

    config = {
        "architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "is_encoder_decoder": True,
        "d_model": cfg["d_model"], "d_kv": cfg["d_kv"], "d_ff": cfg["d_ff"], "num_layers": cfg["num_layers"],
        "num_decoder_layers": cfg["num_decoder_layers"], "num_heads": cfg["num_heads"],
        "relative_attention_num_buckets": cfg["relative_attention_num_buckets"],
        "relative_attention_max_distance": cfg["relative_attention_max_distance"], "dropout_rate": 0.1,
        "layer_norm_epsilon": cfg["layer_norm_epsilon"], "initializer_factor": 1.0,
        "feed_forward_proj": cfg["feed_forward_proj"], "tie_word_embeddings": cfg["tie_word_embeddings"],
        "vocab_size": cfg["vocab_size"], "pad_token_id": PAD, "eos_token_id": EOS, "decoder_start_token_id": PAD,
        "use_cache": True, "torch_dtype": "float32",
        "task_specific_params": {"translation_en_to_de": {"prefix": "translate English to German: ", "max_length": 300, "num_beams": 4, "early_stopping": True}},
    }
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(folder, "generation_config.json"), "w") as f:
        json.dump({"decoder_start_token_id": PAD, "eos_token_id": EOS, "pad_token_id": PAD}, f, indent=2)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                   "extra_ids": EXTRA_IDS, "legacy": True, "clean_up_tokenization_spaces": False, "model_max_length": 512}, f, indent=2)
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump({"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                   "additional_special_tokens": [f"<extra_id_{i}>" for i in range(EXTRA_IDS)]}, f)
    # save_pretrained's safetensors: shared.weight once (embed_tokens and a tied lm_head are its aliases, not stored).
    write_safetensors(os.path.join(folder, "model.safetensors"), W)
    # torch.save of the state dict: every name, the tied ones sharing one storage.
    state = dict(W)
    state["encoder.embed_tokens.weight"] = W["shared.weight"]
    state["decoder.embed_tokens.weight"] = W["shared.weight"]
    if cfg["tie_word_embeddings"]:
        state["lm_head.weight"] = W["shared.weight"]
    if cfg["tie_word_embeddings"]:  # one folder also has pytorch_model.bin (the tests read it instead of the safetensors)
        torch.save(state, os.path.join(folder, "pytorch_model.bin"))
    expected = {
        "sentences": SENTENCES, "max_new_tokens": MAX_NEW, "eos_tuning": beta,
        "input_ids": ids.tolist(), "attention_mask": mask.tolist(),
        "encoder_output_0": memory[0, : int(mask[0].sum())].tolist(),
        "first_step_logits": first_logits[:3].tolist(),
        "forced_logits_0": forced_logits[:4].tolist(),
        "tokenizer": [{"text": t, "ids": tok.encode(t)} for t in TOKENIZER_CASES],
        "greedy_ids": greedy_ids, "greedy_text": [tok.decode(g) for g in greedy_ids],
        "beam4": {k: dict(v, text=[tok.decode(t) for t in v["ids"]]) for k, v in beams.items()},
        "short": {"max_new_tokens": SHORT_NEW, "greedy_ids": short_greedy, "greedy_text": [tok.decode(g) for g in short_greedy],
                  "beam4": {k: dict(v, text=[tok.decode(t) for t in v["ids"]]) for k, v in short_beams.items()}},
        "decode_cases": [{"ids": c, "text": tok.decode(c)} for c in
                         ([5, 6, 7, EOS], [tok.size - 1, 8, 9, tok.size - 2, PAD], [UNK, 10, 11], [cfg["vocab_size"] - 1, 12])],
    }
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f)
    print(name, "eos beta", beta, "greedy lengths", [len(g) for g in greedy_ids],
          "beam finished", {k: sum(v["finished"]) for k, v in beams.items()},
          f"at {SHORT_NEW} new tokens: greedy lengths", [len(g) for g in short_greedy],
          "beam finished", {k: sum(v["finished"]) for k, v in short_beams.items()})


def main():
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w") as f:
            f.write(CORPUS)
        prefix = os.path.join(tmp, "spiece")
        subprocess.run(["spm_train", f"--input={corpus}", f"--model_prefix={prefix}", "--vocab_size=160", "--model_type=unigram", "--normalization_rule_name=identity",
                        "--character_coverage=1.0", "--pad_id=0", "--eos_id=1", "--unk_id=2", "--bos_id=-1",
                        "--pad_piece=<pad>", "--eos_piece=</s>", "--unk_piece=<unk>", "--seed_sentencepiece_size=1000",
                        "--num_threads=1", "--minloglevel=2"], check=True)
        model = os.path.join(OUT, "spiece.model")  # one SentencePiece model, shared by both folders (the tests copy it in)
        os.makedirs(OUT, exist_ok=True)
        with open(prefix + ".model", "rb") as src, open(model, "wb") as dst:
            dst.write(src.read())
        common = dict(d_model=16, num_heads=2, d_kv=12, num_layers=2, relative_attention_num_buckets=8,
                      relative_attention_max_distance=20, layer_norm_epsilon=1e-6)
        pieces = len(Tokenizer(model).pieces)
        common.update(pieces=pieces, vocab_size=pieces + EXTRA_IDS + 8)  # 8 rows past the tokenizer, as t5-small has 28
        build("t5-tiny", dict(common, d_ff=32, num_decoder_layers=2, feed_forward_proj="relu", tie_word_embeddings=True), 1, model)
        build("flan-t5-tiny", dict(common, d_ff=24, num_decoder_layers=3, feed_forward_proj="gated-gelu", tie_word_embeddings=False), 2, model)


# ---------------------------------------------------------------- legacy=False (tokenization_t5.py's non-legacy path)
def varint(data, at):
    value = shift = 0
    while True:
        b = data[at]
        at += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, at


def put_varint(value):
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def fields(data):
    """(field number, wire type, raw bytes of the whole field) of a protobuf message."""
    at = 0
    while at < len(data):
        start = at
        key, at = varint(data, at)
        wire = key & 7
        if wire == 0:
            _, at = varint(data, at)
        elif wire == 2:
            n, at = varint(data, at)
            at += n
        elif wire == 5:
            at += 4
        elif wire == 1:
            at += 8
        else:
            raise ValueError(f"wire type {wire}")
        yield key >> 3, wire, data[start:at]


def without_dummy_prefix(model_bytes):
    """The model with normalizer_spec.add_dummy_prefix = false (what T5Tokenizer.get_spm_processor does when not legacy)."""
    out = bytearray()
    for number, wire, raw in fields(model_bytes):
        if number == 3 and wire == 2:  # ModelProto.normalizer_spec
            _, at = varint(raw, 0)
            n, at = varint(raw, at)
            spec = b"".join(r for f, _, r in fields(raw[at : at + n]) if f != 3) + put_varint(3 << 3) + b"\x00"
            raw = put_varint((3 << 3) | 2) + put_varint(len(spec)) + spec
        out += raw
    return bytes(out)


class NonLegacyTokenizer(Tokenizer):
    """T5Tokenizer(legacy=False, add_prefix_space=...): tokenize / _tokenize of tokenization_t5.py."""

    def __init__(self, model, plain_model, add_prefix_space=True):
        super().__init__(plain_model)
        self.nodp, self.add_prefix_space = model, add_prefix_space
        self.unk_length = len(self.pieces_nodp("<unk>"))

    def pieces_nodp(self, text):
        out = spm(["spm_encode", "--model", self.nodp, "--output_format=id"], text + "\n")
        return [self.pieces[int(x)] for x in out.split()]

    def sp_tokenize(self, text):
        if not text.startswith(("▁", " ")):
            return self.pieces_nodp(text)
        tokens = self.pieces_nodp("<unk>" + text)
        return tokens[self.unk_length :] if len(tokens) >= self.unk_length else tokens

    def encode(self, text):
        if len(text) == 0:
            return super().encode(text) if text else [EOS]
        text = text.replace("▁", " ")
        if self.add_prefix_space:
            text = "▁" + text
        names = sorted(self.special, key=len, reverse=True)
        parts = re.split("(" + "|".join(re.escape(n) for n in names) + ")", text)
        for i in range(1, len(parts), 2):
            if parts[i].startswith("<extra_id_"):  # sentinels: lstrip and rstrip
                parts[i - 1] = parts[i - 1].rstrip()
                parts[i + 1] = parts[i + 1].lstrip()
        tokens = []  # (text, id or None)
        for i, part in enumerate(parts):
            if i % 2:
                tokens.append((part, self.special[part]))
            elif part:
                tokens.extend((p, None) for p in self.sp_tokenize(part))
        if len(tokens) > 1 and tokens[0][0] == "▁" and tokens[1][1] is not None:
            tokens = tokens[1:]
        ids = [i if i is not None else self.pieces.index(t) for t, i in tokens]
        return ids if ids[-1:] == [EOS] else ids + [EOS]


NON_LEGACY_CASES = TOKENIZER_CASES + ["▁already marked", "Hello<extra_id_0>world", "<extra_id_0>   x", " leading space", "a▁b"]


def extra():
    """tokenizer-nonlegacy.json over the committed spiece.model: legacy=False ids with and without add_prefix_space."""
    model = os.path.join(OUT, "spiece.model")
    with tempfile.TemporaryDirectory() as tmp:
        nodp = os.path.join(tmp, "nodp.model")
        with open(model, "rb") as f, open(nodp, "wb") as g:
            g.write(without_dummy_prefix(f.read()))
        legacy = Tokenizer(model)
        prefixed, bare = NonLegacyTokenizer(nodp, model), NonLegacyTokenizer(nodp, model, add_prefix_space=False)
        cases = [{"text": t, "legacy": legacy.encode(t), "ids": prefixed.encode(t), "ids_no_prefix_space": bare.encode(t)} for t in NON_LEGACY_CASES]
    with open(os.path.join(OUT, "tokenizer-nonlegacy.json"), "w") as f:
        json.dump(cases, f, indent=1)
    print("cases differing from legacy:", sum(c["ids"] != c["legacy"] for c in cases), "of", len(cases))


if __name__ == "__main__":
    extra() if sys.argv[1:] == ["--extra"] else main()
