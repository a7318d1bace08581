#!/usr/bin/env python3
"""Tiny NLLB-200 (M2M100ForConditionalGeneration) folders and what transformers would compute with them, by an
independent PyTorch re-implementation.

Written from the source of Hugging Face transformers (models/m2m_100/modeling_m2m_100.py, configuration_m2m_100.py,
models/nllb/tokenization_nllb.py, generation/utils.py), without transformers itself (not installed here):
  * NllbTokenizer: SentencePiece (the spm command-line tools of Debian's `sentencepiece`) segments; fairseq's ids
    <s>=0 <pad>=1 </s>=2 <unk>=3, piece p at p+1 (SentencePiece's unknown piece 0 becomes 3), the language codes after
    the pieces, then <mask>; a source is [src_lang] pieces </s> (legacy_behaviour: pieces </s> [src_lang]);
    decode(skip_special_tokens=True) drops the specials and codes, joins the pieces, turns '▁' into spaces and strips;
  * the model: pre-norm blocks, final layer norms, one shared embedding × sqrt(d_model), fairseq's sinusoid table with
    position ids from the input ids and padding_idx (create_position_ids_from_input_ids), relu feed-forwards, lm_head
    tied to the embedding;
  * generate: decoder start </s>, forced_bos_token_id = the target language code at the first generated position,
    greedy, and beam search (num_beams 4, length_penalty 1, early_stopping true / false / "never").

  * M2M100Tokenizer: vocab.json (fairseq's four specials first, then SentencePiece's pieces) numbers the pieces, a piece
    it lacks is <unk>, the __xx__ language tokens follow the vocabulary in the order of the m2m100 code set; decode is
    SentencePiece's decoding of the pieces without specials and language tokens.

Writes tests/Transduce.Tests/Import/M2M100/testdata/: nllb-tiny/ (model.safetensors and pytorch_model.bin,
tokenizer_config.json with added_tokens_decoder, expected.json), nllb-tiny-shards/ (the same weights as two
pytorch_model-*.bin shards behind pytorch_model.bin.index.json, legacy_behaviour on, the classic id layout), and
m2m100-tiny/ (M2M100Tokenizer, 3 decoder blocks, an untied lm_head, two safetensors shards behind an index, expected.json).
Run with /usr/bin/python3 (Debian's python3-torch 1.13) from the repository root; `--extra` writes only the vectors over
the committed folders (special-tokens-in-text.json: added tokens typed in a source, clean_up_tokenization;
nllb-tiny-shards/expected-legacy.json: legacy_behaviour through generate and its training encoding).
"""
import json, math, os, re, shutil, struct, subprocess, sys, tempfile
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "Transduce.Tests", "Import", "M2M100", "testdata")
BOS, PAD, EOS, UNK = 0, 1, 2, 3
MAX_LENGTH = 16  # generation_config.json's max_length: the start token and at most 15 new tokens
CODES = ["eng_Latn", "fra_Latn", "deu_Latn", "spa_Latn"]  # the tiny folders' languages (additional_special_tokens)

CORPUS = """The house is wonderful.
I like the small garden behind the house.
Where is the station?
The weather was cold and the children stayed at home all day.
La maison est magnifique. J'aime le petit jardin derrière la maison.
Où est la gare ? Le temps était froid et les enfants sont restés à la maison.
Das Haus ist wunderbar. Ich mag den kleinen Garten hinter dem Haus.
La casa es maravillosa. Me gusta el pequeño jardín detrás de la casa.
A model reads a sentence and writes another one, token by token, until it writes the end.
Numbers like 12, 345 and 6789 appear in text.
"""
SENTENCES = ["The house is wonderful.", "Where is the station?", "I like the garden behind the house, 12 days."]


def spm(args, text):
    return subprocess.run(args, input=text, capture_output=True, text=True, check=True).stdout


class Tokenizer:
    """NllbTokenizer over a SentencePiece model."""

    def __init__(self, model, codes, legacy=False):
        self.model, self.legacy = model, legacy
        self.pieces = [line.split("\t")[0] for line in spm(["spm_export_vocab", "--model", model], "").splitlines()]
        self.code_ids = {c: len(self.pieces) + 1 + i for i, c in enumerate(codes)}
        self.mask = len(self.pieces) + 1 + len(codes)
        self.size = self.mask + 1

    def pieces_of(self, text):
        out = spm(["spm_encode", "--model", self.model, "--output_format=id"], text + "\n")
        return [int(x) + 1 if int(x) != 0 else UNK for x in out.split()]

    def added(self):
        """The added tokens (content -> id, lstrip, rstrip): the four specials, the codes, <mask> (lstrip)."""
        tokens = {"<s>": (BOS, False, False), "<pad>": (PAD, False, False), "</s>": (EOS, False, False), "<unk>": (UNK, False, False)}
        tokens.update({c: (i, False, False) for c, i in self.code_ids.items()})
        tokens["<mask>"] = (self.mask, True, False)
        return tokens

    def encode(self, text, src_lang):
        code = self.code_ids[src_lang]
        ids = with_added_tokens(text, self.added(), self.pieces_of)
        return ids + [EOS, code] if self.legacy else [code] + ids + [EOS]

    def decode(self, ids):
        special = {BOS, PAD, EOS, UNK, self.mask, *self.code_ids.values()}
        return "".join(self.pieces[i - 1] for i in ids if i not in special).replace("\u2581", " ").strip()


def with_added_tokens(text, added, pieces_of):
    """PreTrainedTokenizer.tokenize: the added tokens are cut out of the text (leftmost, longest first), the text beside
    one with lstrip / rstrip loses its whitespace on that side, empty stretches go, each other stretch is segmented alone."""
    names = sorted(added, key=len, reverse=True)
    parts = re.split("(" + "|".join(re.escape(n) for n in names) + ")", text)  # text, token, text, token, ..., text
    for i in range(1, len(parts), 2):
        _, lstrip, rstrip = added[parts[i]]
        if lstrip:
            parts[i - 1] = parts[i - 1].rstrip()
        if rstrip:
            parts[i + 1] = parts[i + 1].lstrip()
    ids = []
    for i, part in enumerate(parts):
        if i % 2:
            ids.append(added[part][0])
        elif part:
            ids.extend(pieces_of(part))
    return ids


def clean_up_tokenization(text):
    """PreTrainedTokenizerBase.clean_up_tokenization."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
                 (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


M2M100_CODES = ["af", "am", "ar", "ast", "az", "ba", "be", "bg", "bn", "br", "bs", "ca", "ceb", "cs", "cy", "da", "de", "el", "en", "es",
                "et", "fa", "ff", "fi", "fr", "fy", "ga", "gd", "gl", "gu", "ha", "he", "hi", "hr", "ht", "hu", "hy", "id", "ig", "ilo",
                "is", "it", "ja", "jv", "ka", "kk", "km", "kn", "ko", "lb", "lg", "ln", "lo", "lt", "lv", "mg", "mk", "ml", "mn", "mr",
                "ms", "my", "ne", "nl", "no", "ns", "oc", "or", "pa", "pl", "ps", "pt", "ro", "ru", "sd", "si", "sk", "sl", "so", "sq",
                "sr", "ss", "su", "sv", "sw", "ta", "th", "tl", "tn", "tr", "uk", "ur", "uz", "vi", "wo", "xh", "yi", "yo", "zh", "zu"]


class M2M100Tok:
    """M2M100Tokenizer: vocab.json numbers SentencePiece's pieces (fairseq's four specials first), __xx__ tokens follow."""

    def __init__(self, model):
        self.model = model
        pieces = [line.split("\t")[0] for line in spm(["spm_export_vocab", "--model", model], "").splitlines()]
        self.encoder = {"<s>": BOS, "<pad>": PAD, "</s>": EOS, "<unk>": UNK}
        for piece in pieces:
            if piece not in ("<unk>", "<s>", "</s>"):
                self.encoder[piece] = len(self.encoder)
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.code_ids = {c: len(self.encoder) + i for i, c in enumerate(M2M100_CODES)}
        self.size = len(self.encoder) + len(M2M100_CODES) + 8  # and num_madeup_words

    def pieces_of(self, text):
        pieces = spm(["spm_encode", "--model", self.model, "--output_format=piece"], text + "\n").split()
        return [self.encoder.get(p, UNK) for p in pieces]

    def encode(self, text, src_lang):
        added = {t: (self.encoder[t], False, False) for t in ("<s>", "<pad>", "</s>", "<unk>")}
        added.update({f"__{c}__": (i, False, False) for c, i in self.code_ids.items()})
        return [self.code_ids[src_lang]] + with_added_tokens(text, added, self.pieces_of) + [EOS]

    def decode(self, ids):
        special = {BOS, PAD, EOS, UNK, *self.code_ids.values()}
        tokens = [self.decoder[i] for i in ids if i not in special and i in self.decoder]
        if not tokens:
            return ""
        return spm(["spm_decode", "--model", self.model, "--input_format=piece"], " ".join(tokens) + "\n").rstrip("\n")


# ---------------------------------------------------------------- the model, as modeling_m2m_100.py computes it
def sinusoids(rows, d, padding_idx):
    half = d // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000) / (half - 1)))
    angles = torch.arange(rows, dtype=torch.float).unsqueeze(1) * freq.unsqueeze(0)
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if d % 2 == 1:
        table = torch.cat([table, torch.zeros(rows, 1)], dim=1)
    table[padding_idx, :] = 0
    return table


def positions(cfg, ids, past=0):
    mask = ids.ne(PAD).int()
    pos = (torch.cumsum(mask, dim=1).type_as(mask) + past) * mask
    table = sinusoids(cfg["max_position_embeddings"] + 4, cfg["d_model"], PAD)
    return table.index_select(0, (pos.long() + PAD).view(-1)).view(ids.shape[0], ids.shape[1], -1)


def ln(W, name, x):
    return torch.nn.functional.layer_norm(x, x.shape[-1:], W[name + ".weight"], W[name + ".bias"], 1e-5)


def linear(W, name, x):
    return x @ W[name + ".weight"].T + W[name + ".bias"]


def attention(W, p, x, kv, additive, cfg):
    b, q_len, d = x.shape
    H = cfg["encoder_attention_heads"]
    hd = d // H
    q = (linear(W, p + ".q_proj", x) * hd ** -0.5).view(b, q_len, H, hd).transpose(1, 2)
    k = linear(W, p + ".k_proj", kv).view(b, -1, H, hd).transpose(1, 2)
    v = linear(W, p + ".v_proj", kv).view(b, -1, H, hd).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) + additive
    out = torch.softmax(scores, dim=-1) @ v
    return linear(W, p + ".out_proj", out.transpose(1, 2).reshape(b, q_len, d))


def ffn(W, p, x):
    return linear(W, p + ".fc2", torch.relu(linear(W, p + ".fc1", x)))


def padding_bias(mask, q_len):
    return (1.0 - mask[:, None, None, :].float()).masked_fill(mask[:, None, None, :] == 0, torch.finfo(torch.float).min).expand(-1, 1, q_len, -1)


def encode(W, cfg, ids, mask):
    x = W["model.shared.weight"][ids] * math.sqrt(cfg["d_model"]) + positions(cfg, ids)
    bias = padding_bias(mask, ids.shape[1])
    for i in range(cfg["encoder_layers"]):
        p = f"model.encoder.layers.{i}"
        h = ln(W, p + ".self_attn_layer_norm", x)
        x = x + attention(W, p + ".self_attn", h, h, bias, cfg)
        x = x + ffn(W, p, ln(W, p + ".final_layer_norm", x))
    return ln(W, "model.encoder.layer_norm", x)


def decode(W, cfg, memory, mask, tokens, hidden=False):
    """Teacher-forced decoder over the whole prefix (what the cached steps of generate compute, position by position)."""
    t = tokens.shape[1]
    x = W["model.shared.weight"][tokens] * math.sqrt(cfg["d_model"]) + positions(cfg, tokens)
    causal = torch.full((t, t), torch.finfo(torch.float).min).triu(1)[None, None]
    cross = padding_bias(mask, t)
    for i in range(cfg["decoder_layers"]):
        p = f"model.decoder.layers.{i}"
        h = ln(W, p + ".self_attn_layer_norm", x)
        x = x + attention(W, p + ".self_attn", h, h, causal, cfg)
        x = x + attention(W, p + ".encoder_attn", ln(W, p + ".encoder_attn_layer_norm", x), memory, cross, cfg)
        x = x + ffn(W, p, ln(W, p + ".final_layer_norm", x))
    x = ln(W, "model.decoder.layer_norm", x)
    return x if hidden else x @ W["lm_head.weight" if "lm_head.weight" in W else "model.shared.weight"].T


# ---------------------------------------------------------------- generate (decoder start </s>, forced BOS)
def forced(scores, step, forced_bos):
    if step == 0:  # ForcedBOSTokenLogitsProcessor: at the first generated position only that token, score 0
        scores = torch.full_like(scores, -math.inf)
        scores[..., forced_bos] = 0
    return scores


def greedy(W, cfg, memory, mask, forced_bos):
    tokens = [EOS]
    for step in range(MAX_LENGTH - 1):
        logits = forced(decode(W, cfg, memory, mask, torch.tensor([tokens]))[0, -1], step, forced_bos)
        t = int(torch.argmax(logits))
        tokens.append(t)
        if t == EOS:
            break
    return tokens[1:]


def beam(W, cfg, memory, mask, forced_bos, k, early_stopping, lp=1.0):
    """One sentence: the best finished hypothesis (tokens after the start token, </s> included when it ended)."""
    running = [([EOS], 0.0)]
    finished = []  # (normalised score, tokens)
    cur_len = 1
    while True:
        seqs = torch.tensor([r[0] for r in running])
        logits = decode(W, cfg, memory.expand(len(running), -1, -1), mask.expand(len(running), -1), seqs)[:, -1]
        logp = forced(torch.log_softmax(logits, dim=-1), cur_len - 1, forced_bos)
        flat = (logp + torch.tensor([r[1] for r in running])[:, None]).reshape(-1)
        top = torch.topk(flat, 2 * k)
        V = logp.shape[-1]
        last = cur_len + 1 == MAX_LENGTH
        new_running = []
        # transformers blocks new finished hypotheses when the k slots were full before this step (is_sent_finished).
        full_before = len(finished) >= k
        for rank, (score, index) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
            if score == -math.inf:
                continue
            b, t = divmod(index, V)
            seq = running[b][0] + [t]
            if (t == EOS or last) and rank < k:
                if not (early_stopping is True and full_before):
                    finished.append((score / (cur_len ** lp), seq[1:]))
                    finished.sort(key=lambda f: -f[0])
                    del finished[k:]
            elif t != EOS and len(new_running) < k:
                new_running.append((seq, score))
        running = new_running
        cur_len += 1
        full = len(finished) >= k
        length = MAX_LENGTH - 1 if early_stopping == "never" and lp > 0 else cur_len - 1
        improvable = not full or (running and running[0][1] / (length ** lp) > finished[-1][0])
        if not (improvable and running and not (full and early_stopping is True) and cur_len < MAX_LENGTH):
            break
    return finished[0][1], finished[0][0]


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
    d, F, V = cfg["d_model"], cfg["encoder_ffn_dim"], cfg["vocab_size"]
    n = lambda *shape, std: torch.randn(*shape, generator=g) * std
    W = {"model.shared.weight": n(V, d, std=d ** -0.5 * 2)}
    W["model.shared.weight"][PAD] = 0  # nn.Embedding(padding_idx=1) starts the pad row at zero
    W["model.shared.weight"][cfg["first_added"]:] *= 0.3  # language codes and <mask> rarely win as outputs (they would decode to nothing)
    for side, layers in (("encoder", cfg["encoder_layers"]), ("decoder", cfg["decoder_layers"])):
        attns = ["self_attn"] if side == "encoder" else ["self_attn", "encoder_attn"]
        for i in range(layers):
            p = f"model.{side}.layers.{i}."
            for a in attns:
                for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                    W[f"{p}{a}.{proj}.weight"] = n(d, d, std=d ** -0.5 * 1.5)
                    W[f"{p}{a}.{proj}.bias"] = n(d, std=0.1)
                W[f"{p}{a}_layer_norm.weight"] = 0.5 + torch.rand(d, generator=g)
                W[f"{p}{a}_layer_norm.bias"] = n(d, std=0.1)
            W[f"{p}fc1.weight"], W[f"{p}fc1.bias"] = n(F, d, std=d ** -0.5), n(F, std=0.1)
            W[f"{p}fc2.weight"], W[f"{p}fc2.bias"] = n(d, F, std=F ** -0.5 * 2), n(d, std=0.1)
            W[f"{p}final_layer_norm.weight"] = 0.5 + torch.rand(d, generator=g)
            W[f"{p}final_layer_norm.bias"] = n(d, std=0.1)
        W[f"model.{side}.layer_norm.weight"] = 0.5 + torch.rand(d, generator=g)
        W[f"model.{side}.layer_norm.bias"] = n(d, std=0.1)
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = n(V, d, std=d ** -0.5 * 2)
        W["lm_head.weight"][cfg["first_added"]:] *= 0.3
    return W


def tune_eos(W, cfg, ids, mask, forced_bos):
    """Moves </s>'s (tied) row along the mean decoder state so that greedy outputs end after a few tokens."""
    row = "lm_head.weight" if "lm_head.weight" in W else "model.shared.weight"
    base = W[row][EOS].clone()
    memory = encode(W, cfg, ids, mask)
    states = []
    for r in range(ids.shape[0]):
        seq = greedy(W, cfg, memory[r : r + 1], mask[r : r + 1], forced_bos)[:8]
        states.append(decode(W, cfg, memory[r : r + 1], mask[r : r + 1], torch.tensor([[EOS] + seq]), hidden=True)[0])
    mean = torch.cat(states).mean(0)
    direction = mean / mean.norm() ** 2
    best = None
    for beta in [x / 4 for x in range(0, 60)]:
        W[row][EOS] = base + beta * direction
        m = encode(W, cfg, ids, mask)
        lengths = [len(greedy(W, cfg, m[r : r + 1], mask[r : r + 1], forced_bos)) for r in range(ids.shape[0])]
        good = sum(3 <= l < MAX_LENGTH - 1 for l in lengths)
        if best is None or good > best[0]:
            best = (good, beta)
    W[row][EOS] = base + best[1] * direction


def tokenizer_files(folder, tok, legacy):
    added = {str(i): {"content": c, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
             for i, c in ((BOS, "<s>"), (PAD, "<pad>"), (EOS, "</s>"), (UNK, "<unk>"))}
    config = {"tokenizer_class": "NllbTokenizer", "src_lang": "eng_Latn", "tgt_lang": None, "legacy_behaviour": legacy,
              "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>",
              "sep_token": "</s>", "cls_token": "<s>", "model_max_length": 1024, "clean_up_tokenization_spaces": False,
              "additional_special_tokens": CODES}
    if not legacy:  # what save_pretrained writes: every added token with its id
        for code, i in tok.code_ids.items():
            added[str(i)] = dict(added["0"], content=code)
        added[str(tok.mask)] = dict(added["0"], content="<mask>", lstrip=True, normalized=True)
        config["added_tokens_decoder"] = added
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)


def reference(W, cfg, tok, source, target):
    """Tunes </s>'s row (so that outputs end), then what transformers computes for SENTENCES from source to target."""
    rows = [tok.encode(s, source) for s in SENTENCES]
    width = max(map(len, rows))
    ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    mask = ids.ne(PAD).long()
    fid = tok.code_ids[target]
    with torch.no_grad():
        tune_eos(W, cfg, ids, mask, fid)
        memory = encode(W, cfg, ids, mask)
        first = decode(W, cfg, memory, mask, torch.full((len(rows), 1), EOS))[:, 0]
        greedy_out = [greedy(W, cfg, memory[r : r + 1], mask[r : r + 1], fid) for r in range(len(rows))]
        beams = {str(es): [beam(W, cfg, memory[r : r + 1], mask[r : r + 1], fid, 4, es)[0] for r in range(len(rows))]
                 for es in (False, True, "never")}
    return {
        "sentences": SENTENCES, "source_lang": source, "target_lang": target, "forced_bos_token_id": fid,
        "input_ids": ids.tolist(), "attention_mask": mask.tolist(),
        "encoder_output_0": memory[0, : int(mask[0].sum())].tolist(),
        "first_step_logits": first.tolist(),
        "greedy": greedy_out, "greedy_text": [tok.decode(g) for g in greedy_out],
        "beam4": beams, "beam4_text": {k: [tok.decode(t) for t in v] for k, v in beams.items()},
        "languages": tok.code_ids,
    }


def main():
    work = tempfile.mkdtemp()
    with open(os.path.join(work, "corpus.txt"), "w") as f:
        f.write(CORPUS)
    subprocess.run(["spm_train", f"--input={work}/corpus.txt", f"--model_prefix={work}/spm", "--vocab_size=120", "--model_type=bpe",
                    "--character_coverage=1.0", "--normalization_rule_name=identity", "--unk_id=0", "--bos_id=1", "--eos_id=2", "--pad_id=-1"], check=True, capture_output=True)
    spm_model = os.path.join(work, "spm.model")
    tok = Tokenizer(spm_model, CODES)
    cfg = {"model_type": "m2m_100", "architectures": ["M2M100ForConditionalGeneration"], "vocab_size": tok.size + 2,
           "d_model": 16, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
           "encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "max_position_embeddings": 64, "activation_function": "relu",
           "scale_embedding": True, "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0,
           "pad_token_id": PAD, "bos_token_id": BOS, "eos_token_id": EOS, "decoder_start_token_id": EOS,
           "tie_word_embeddings": True, "torch_dtype": "float32", "transformers_version": "4.57.0"}
    generation = {"bos_token_id": BOS, "decoder_start_token_id": EOS, "eos_token_id": EOS, "pad_token_id": PAD, "max_length": MAX_LENGTH}
    W = make_weights(dict(cfg, first_added=len(tok.pieces) + 1), seed=21)

    expected = dict(reference(W, cfg, tok, "eng_Latn", "fra_Latn"),
                    legacy_input_ids=[Tokenizer(spm_model, CODES, legacy=True).encode(s, "eng_Latn") for s in SENTENCES], mask_id=tok.mask)

    single = os.path.join(OUT, "nllb-tiny")
    shards = os.path.join(OUT, "nllb-tiny-shards")
    for folder in (single, shards):
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        shutil.copy(spm_model, os.path.join(folder, "sentencepiece.bpe.model"))
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        with open(os.path.join(folder, "generation_config.json"), "w") as f:
            json.dump(generation, f, indent=2)
    # save_pretrained with safe_serialization drops the tied copies; torch.save keeps lm_head as a view of the embedding.
    write_safetensors(os.path.join(single, "model.safetensors"), W)
    torch.save(dict(W, **{"lm_head.weight": W["model.shared.weight"]}), os.path.join(single, "pytorch_model.bin"))
    tokenizer_files(single, tok, legacy=False)
    with open(os.path.join(single, "expected.json"), "w") as f:
        json.dump(expected, f)
    # Two pytorch_model.bin shards behind an index, the legacy tokenizer layout.
    names = sorted(W)
    weight_map = {}
    for s in range(2):
        file = f"pytorch_model-0000{s + 1}-of-00002.bin"
        part = {n: W[n] for i, n in enumerate(names) if i % 2 == s}
        torch.save(part, os.path.join(shards, file))
        weight_map.update({n: file for n in part})
    with open(os.path.join(shards, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(t.numel() * 4 for t in W.values())}, "weight_map": weight_map}, f, indent=2)
    tokenizer_files(shards, tok, legacy=True)
    # M2M100 flavour: vocab.json and __xx__ language tokens, 3 decoder blocks, an untied lm_head, two safetensors shards.
    m2m = M2M100Tok(spm_model)
    cfg2 = dict(cfg, vocab_size=m2m.size, decoder_layers=3, tie_word_embeddings=False)
    W2 = make_weights(dict(cfg2, first_added=len(m2m.encoder)), seed=5)
    expected2 = reference(W2, cfg2, m2m, "en", "fr")
    folder = os.path.join(OUT, "m2m100-tiny")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    shutil.copy(spm_model, os.path.join(folder, "sentencepiece.bpe.model"))
    for name, content in (("config.json", cfg2), ("generation_config.json", generation), ("vocab.json", m2m.encoder), ("expected.json", expected2),
                          ("tokenizer_config.json", {"tokenizer_class": "M2M100Tokenizer", "language_codes": "m2m100", "src_lang": "en", "tgt_lang": None,
                                                     "num_madeup_words": 8, "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
                                                     "unk_token": "<unk>", "sep_token": "</s>", "model_max_length": 1024})):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(content, f, indent=2)
    names2 = sorted(W2)
    weight_map = {}
    for s in range(2):
        file = f"model-0000{s + 1}-of-00002.safetensors"
        part = {n: W2[n] for i, n in enumerate(names2) if (i < len(names2) // 2) == (s == 0)}
        write_safetensors(os.path.join(folder, file), part)
        weight_map.update({n: file for n in part})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(t.numel() * 4 for t in W2.values())}, "weight_map": weight_map}, f, indent=2)
    shutil.rmtree(work)
    print("m2m100 greedy:", expected2["greedy_text"])
    print("m2m100 beam4:", expected2["beam4_text"])
    print("greedy:", expected["greedy_text"])
    print("beam4:", expected["beam4_text"])


NLLB_TEXT_CASES = ["Hello fra_Latn world", "a <mask> b", "x</s>y", "<s> start <pad>", "deu_Latn", "  eng_Latn  spaced  ",
                   "The house<unk>is", "fra_Latnx", "<mask>", "two   <mask>  masks<mask>"]
M2M100_TEXT_CASES = ["Hello __fr__ world", "x</s>y", "__de__", "a <unk> b", "__fr__x", "<s> <pad>"]


def extra():
    """Vectors over the committed folders (their weights and SentencePiece model unchanged): special tokens typed in a
    source, NLLB's legacy_behaviour through generate (nllb-tiny-shards) and its training encoding, clean_up_tokenization."""
    torch.set_grad_enabled(False)
    single, shards, m2m_folder = (os.path.join(OUT, n) for n in ("nllb-tiny", "nllb-tiny-shards", "m2m100-tiny"))
    spm_model = os.path.join(single, "sentencepiece.bpe.model")
    tok, legacy = Tokenizer(spm_model, CODES), Tokenizer(spm_model, CODES, legacy=True)
    m2m = M2M100Tok(spm_model)
    cases = {
        "nllb": [{"text": t, "ids": tok.encode(t, "eng_Latn")} for t in NLLB_TEXT_CASES],
        "nllb_legacy": [{"text": t, "ids": legacy.encode(t, "eng_Latn")} for t in NLLB_TEXT_CASES],
        "m2m100": [{"text": t, "ids": m2m.encode(t, "en")} for t in M2M100_TEXT_CASES],
    }
    pieces = tok.pieces_of("Hello . World , it 's ok ?")
    cases["clean_up"] = {"ids": pieces, "text": tok.decode(pieces), "cleaned": clean_up_tokenization(tok.decode(pieces))}
    with open(os.path.join(OUT, "special-tokens-in-text.json"), "w") as f:
        json.dump(cases, f, indent=1)

    # legacy_behaviour: pieces </s> [src_lang] into the same weights; generate still forces the target code first.
    with open(os.path.join(shards, "config.json")) as f:
        cfg = json.load(f)
    W = {}
    for name in sorted(os.listdir(shards)):
        if name.endswith(".bin"):
            W.update(torch.load(os.path.join(shards, name)))
    rows = [legacy.encode(s, "eng_Latn") for s in SENTENCES]
    width = max(map(len, rows))
    ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    mask = ids.ne(PAD).long()
    fid = legacy.code_ids["fra_Latn"]
    memory = encode(W, cfg, ids, mask)
    greedy_out = [greedy(W, cfg, memory[r : r + 1], mask[r : r + 1], fid) for r in range(len(rows))]
    beams = {str(es): [beam(W, cfg, memory[r : r + 1], mask[r : r + 1], fid, 4, es)[0] for r in range(len(rows))] for es in (False, True, "never")}
    # text_target in legacy mode: labels pieces </s> [tgt_lang]; decoder input = labels shifted right after </s> (the start).
    source, target = "The house is wonderful.", "La maison est magnifique."
    labels = legacy.pieces_of(target) + [EOS, legacy.code_ids["fra_Latn"]]
    expected = {
        "sentences": SENTENCES, "source_lang": "eng_Latn", "target_lang": "fra_Latn", "input_ids": ids.tolist(),
        "greedy": greedy_out, "greedy_text": [legacy.decode(g) for g in greedy_out],
        "beam4": beams, "beam4_text": {k: [legacy.decode(t) for t in v] for k, v in beams.items()},
        "train_pair": {"source": source, "target": target, "input_ids": legacy.encode(source, "eng_Latn"), "labels": labels,
                       "decoder_input_ids": [EOS] + labels[:-1]},
    }
    with open(os.path.join(shards, "expected-legacy.json"), "w") as f:
        json.dump(expected, f)
    print("legacy greedy:", expected["greedy_text"])


if __name__ == "__main__":
    extra() if sys.argv[1:] == ["--extra"] else main()
