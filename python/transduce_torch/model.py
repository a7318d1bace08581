"""Transduce's models in PyTorch: the one model file of the package.

The modules follow src/Transduce/Models line by line (same operations in the same order) and carry Transduce's
parameter names, so a checkpoint's model.safetensors loads into them with load_state_dict(strict=True) and a state_dict
saved from them loads into Transduce unchanged.

build_model(config) -> torch.nn.Module
    A randomly initialised model (Transduce's initialisation) from a model configuration: the "model" object of a
    checkpoint's config.json (snake_case keys as written by Transduce; a whole config.json dict is accepted too).
    Architectures: "transformer" (TransformerSeq2Seq) and "gru" (GruSeq2Seq).

Every model (like Transduce's EncoderDecoder) has
    model(source, valid_lengths, target_input) -> logits (batch, target steps, target vocabulary)
        teacher-forced training forward: source (batch, src steps) int64 padded with PAD_ID, valid_lengths (batch)
        int64 (<eos> included), target_input (batch, tgt steps) starting with BOS_ID; dropout is active in train().
    model.encoder(source, valid_lengths) -> (outputs, final_state or None)
    model.decoder.init_state(encoded, valid_lengths) -> state
    model.decoder(target, state) -> (logits, state)     one step or many; the state carries the key/value cache
                                                       (Transformer) or the hidden state (GRU)
    model.decoder.select_rows(state, indices) -> state  reorders/repeats batch rows (beam search)
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

# Transduce's vocabularies always put the special tokens first (src/Transduce/Text/Vocabulary.cs).
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

ARCHITECTURES = ("transformer", "gru")


def model_config(config):
    """Transduce's ModelConfig defaults (src/Transduce/Models/ModelConfig.cs) under what the dict says."""
    if "model" in config and isinstance(config["model"], dict):
        config = config["model"]
    c = {
        "architecture": "gru", "embedding_size": 256, "hidden_size": 256, "layers": 2, "dropout": 0.2, "pad_id": 0,
        "heads": 4, "ffn_size": 64, "activation": "relu", "pre_norm": False, "tie_embeddings": False,
        "share_embeddings": False, "attention_bias": False, "scale_embedding": True, "max_positions": 1024,
        "decoder_layers": None, "positional_layout": "interleaved",
    }
    c.update(config)
    if c["decoder_layers"] is None:
        c["decoder_layers"] = c["layers"]
    if c["architecture"] == "transformer":
        # The spec choices this twin does not implement: refuse a model that sets one, rather than run another network.
        for key, default in UNIMPLEMENTED_SPEC.items():
            value = c.get(key, default)
            if key == "final_norm" and value == c["pre_norm"]:
                continue
            if value != default:
                raise ValueError(f"model config: '{key}' {value!r} is not implemented by the PyTorch twin (only {default!r})")
        if c["activation"] not in ACTIVATIONS:
            raise ValueError(f"model config: 'activation' '{c['activation']}' is not implemented by the PyTorch twin "
                             f"(known: {', '.join(ACTIVATIONS)})")
    return c


# Keys of the .NET TransformerConfig (src/Transduce/Models/Transformer/TransformerConfig.cs) beyond what this twin builds,
# with the value that means "as this twin does".
UNIMPLEMENTED_SPEC = {
    "ffn_bias": True, "norm": "layer_norm", "norm_epsilon": 1e-5, "embedding_norm": False, "final_norm": None,
    "scale_attention": True, "output_bias": True, "output_scale": 1.0, "positions": "sinusoidal", "position_offset": 0,
}

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "swish": F.silu}


def build_model(config):
    """A freshly initialised model for a model configuration dict (see the module docstring)."""
    c = model_config(config)
    if c["architecture"] == "transformer":
        return TransformerSeq2Seq(c)
    if c["architecture"] == "gru":
        return GruSeq2Seq(c)
    raise ValueError(f"architecture '{c['architecture']}' has no PyTorch implementation (known: {', '.join(ARCHITECTURES)})")


# ---------------------------------------------------------------------------------------------------------------------
# Transformer (src/Transduce/Models/TransformerSeq2Seq.cs, Attention.cs)
# ---------------------------------------------------------------------------------------------------------------------

def valid_length_mask(valid_lengths, keys):
    """(batch, 1, 1, keys): true where key j < the row's valid length (AttentionMasks.FromValidLengths)."""
    positions = torch.arange(keys, dtype=torch.int64)
    return positions.reshape(1, 1, 1, keys).lt(valid_lengths.to(torch.int64).reshape(-1, 1, 1, 1))


def causal_mask(queries, offset):
    """(1, 1, queries, offset + queries): query i at absolute position offset + i sees keys 0 … offset + i."""
    keys = offset + queries
    q = torch.arange(offset, keys, dtype=torch.int64).reshape(queries, 1)
    k = torch.arange(keys, dtype=torch.int64).reshape(1, keys)
    return k.le(q).reshape(1, 1, queries, keys)


def masked_softmax(scores, mask):
    # bf16 scores (matmuls under autocast) are normalised in float32, as AttentionMasks.MaskedSoftmax does.
    dtype = torch.float32 if scores.dtype in (torch.bfloat16, torch.float16) else scores.dtype
    if mask is None:
        return F.softmax(scores, -1, dtype=dtype)
    # -inf gives exactly zero weight, as in Transduce (not a large negative number as in d2l).
    return F.softmax(scores.masked_fill(mask.logical_not(), float("-inf")), -1, dtype=dtype)


class MultiHeadAttention(nn.Module):
    def __init__(self, hidden, heads, dropout, bias):
        super().__init__()
        if hidden % heads != 0:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads, self.head_size = heads, hidden // heads
        self.W_q = nn.Linear(hidden, hidden, bias=bias)
        self.W_k = nn.Linear(hidden, hidden, bias=bias)
        self.W_v = nn.Linear(hidden, hidden, bias=bias)
        self.W_o = nn.Linear(hidden, hidden, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def split_heads(self, x):
        return x.reshape(x.shape[0], x.shape[1], self.heads, self.head_size).transpose(1, 2)

    def project_query(self, x):
        return self.split_heads(self.W_q(x))

    def project_key_value(self, keys, values):
        return self.split_heads(self.W_k(keys)), self.split_heads(self.W_v(values))

    def attend(self, q, k, v, mask):
        scores = q.matmul(k.transpose(-2, -1)).div_(math.sqrt(self.head_size))
        weights = masked_softmax(scores, mask)
        context = self.dropout(weights).matmul(v)                      # (b, h, q, d)
        merged = context.transpose(1, 2).reshape(context.shape[0], context.shape[2], self.heads * self.head_size)
        return self.W_o(merged)

    def forward(self, queries, keys, values, mask):
        k, v = self.project_key_value(keys, values)
        return self.attend(self.project_query(queries), k, v, mask)


class PositionalEncoding(nn.Module):
    """Adds rows offset … offset + steps − 1 of a sinusoid table, then dropout. The table is a saved buffer
    ("…positions.table"), so a loaded model uses Transduce's own float32 values."""

    def __init__(self, hidden, dropout, max_positions, layout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        table = _halves_table(hidden, max_positions) if layout == "halves" else _interleaved_table(hidden, max_positions)
        self.register_buffer("table", table.unsqueeze(0))

    def forward(self, x, offset):
        steps = x.shape[1]
        if offset + steps > self.table.shape[1]:
            raise ValueError(f"sequence of {offset + steps} positions exceeds the positional table; raise max_positions")
        return self.dropout(x + self.table[:, offset:offset + steps])


def _interleaved_table(hidden, max_positions):
    position = torch.arange(max_positions, dtype=torch.float32).reshape(-1, 1)
    div = torch.pow(10000.0, torch.arange(0, hidden, 2, dtype=torch.float32) / hidden)
    angles = position / div
    p = torch.zeros(max_positions, hidden)
    p[:, 0::2] = angles.sin()
    p[:, 1::2] = angles.cos()[:, : hidden // 2]
    return p


def _halves_table(hidden, max_positions):
    sines, cosines = (hidden + 1) // 2, hidden // 2
    position = torch.arange(max_positions, dtype=torch.float64).reshape(-1, 1)
    angles = position / torch.pow(10000.0, torch.arange(0, sines, dtype=torch.float64) * (2.0 / hidden))
    return torch.cat([angles.sin(), angles[:, :cosines].cos()], 1).to(torch.float32)


class PositionWiseFfn(nn.Module):
    def __init__(self, hidden, ffn, activation):
        super().__init__()
        self.dense1 = nn.Linear(hidden, ffn)
        self.dense2 = nn.Linear(ffn, hidden)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x):
        return self.dense2(self.activation(self.dense1(x)))


class Residual(nn.Module):
    """Post-norm LN(x + dropout(f(x))) or pre-norm x + dropout(f(LN(x)))."""

    def __init__(self, hidden, dropout, pre_norm):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x, sublayer):
        if self.pre_norm:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class TransformerEncoderBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.attention = MultiHeadAttention(d, c["heads"], c["dropout"], c["attention_bias"])
        self.addNorm1 = Residual(d, c["dropout"], c["pre_norm"])
        self.ffn = PositionWiseFfn(d, c["ffn_size"], c["activation"])
        self.addNorm2 = Residual(d, c["dropout"], c["pre_norm"])

    def forward(self, x, mask):
        y = self.addNorm1(x, lambda h: self.attention(h, h, h, mask))
        return self.addNorm2(y, self.ffn)


class TransformerEncoder(nn.Module):
    def __init__(self, c, embedding):
        super().__init__()
        d = c["hidden_size"]
        self.embedding = embedding
        self.positions = PositionalEncoding(d, c["dropout"], c["max_positions"], c["positional_layout"])
        self.blocks = nn.ModuleList([TransformerEncoderBlock(c) for _ in range(c["layers"])])
        self.finalNorm = nn.LayerNorm(d) if c["pre_norm"] else None
        self.embedding_scale = math.sqrt(d) if c["scale_embedding"] else 1.0

    def forward(self, source, valid_lengths):
        mask = valid_length_mask(valid_lengths, source.shape[1])
        x = self.positions(self.embedding(source).mul_(self.embedding_scale), 0)
        for block in self.blocks:
            x = block(x, mask)
        if self.finalNorm is not None:
            x = self.finalNorm(x)
        return x, None


class TransformerDecoderBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, heads, p, bias, pre = c["hidden_size"], c["heads"], c["dropout"], c["attention_bias"], c["pre_norm"]
        self.SelfAttention = MultiHeadAttention(d, heads, p, bias)
        self.addNorm1 = Residual(d, p, pre)
        self.CrossAttention = MultiHeadAttention(d, heads, p, bias)
        self.addNorm2 = Residual(d, p, pre)
        self.ffn = PositionWiseFfn(d, c["ffn_size"], c["activation"])
        self.addNorm3 = Residual(d, p, pre)

    def forward(self, x, past_keys, past_values, causal, cross_keys, cross_values, source_mask):
        """Returns the block's output and the self-attention keys/values grown by x's positions (the cache)."""
        grown = []

        def self_attention(h):
            q = self.SelfAttention.project_query(h)
            k, v = self.SelfAttention.project_key_value(h, h)
            if past_keys is not None:
                k, v = torch.cat([past_keys, k], 2), torch.cat([past_values, v], 2)
            grown.extend((k, v))
            return self.SelfAttention.attend(q, k, v, causal)

        y = self.addNorm1(x, self_attention)
        z = self.addNorm2(y, lambda h: self.CrossAttention.attend(self.CrossAttention.project_query(h), cross_keys, cross_values, source_mask))
        return self.addNorm3(z, self.ffn), grown[0], grown[1]


class TransformerState:
    """Source mask, per-layer cross-attention keys/values (computed once), per-layer self-attention cache, steps."""

    def __init__(self, source_mask, cross_keys, cross_values, self_keys, self_values, steps):
        self.source_mask, self.cross_keys, self.cross_values = source_mask, cross_keys, cross_values
        self.self_keys, self.self_values, self.steps = self_keys, self_values, steps


class TransformerDecoder(nn.Module):
    def __init__(self, c, embedding):
        super().__init__()
        d = c["hidden_size"]
        self.embedding = embedding
        self.positions = PositionalEncoding(d, c["dropout"], c["max_positions"], c["positional_layout"])
        self.blocks = nn.ModuleList([TransformerDecoderBlock(c) for _ in range(c["decoder_layers"])])
        self.finalNorm = nn.LayerNorm(d) if c["pre_norm"] else None
        self.dense = nn.Linear(d, c["target_vocab_size"])
        if c["tie_embeddings"]:
            self.dense.weight = embedding.weight
        self.embedding_scale = math.sqrt(d) if c["scale_embedding"] else 1.0

    def init_state(self, encoded, valid_lengths):
        memory = encoded[0]
        kv = [b.CrossAttention.project_key_value(memory, memory) for b in self.blocks]
        n = len(self.blocks)
        return TransformerState(valid_length_mask(valid_lengths, memory.shape[1]),
                                [k for k, _ in kv], [v for _, v in kv], [None] * n, [None] * n, 0)

    def select_rows(self, s, indices):
        pick = lambda t: None if t is None else t.index_select(0, indices)  # noqa: E731
        return TransformerState(pick(s.source_mask), [pick(t) for t in s.cross_keys], [pick(t) for t in s.cross_values],
                                [pick(t) for t in s.self_keys], [pick(t) for t in s.self_values], s.steps)

    def forward(self, target, state):
        steps = target.shape[1]
        causal = causal_mask(steps, state.steps)
        x = self.positions(self.embedding(target).mul_(self.embedding_scale), state.steps)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, state.self_keys[i], state.self_values[i], causal,
                            state.cross_keys[i], state.cross_values[i], state.source_mask)
            keys.append(k)
            values.append(v)
        if self.finalNorm is not None:
            x = self.finalNorm(x)
        return self.dense(x), TransformerState(state.source_mask, state.cross_keys, state.cross_values, keys, values,
                                               state.steps + steps)


class EncoderDecoder(nn.Module):
    """d2l §10.6's composition: forward returns the decoder's logits over a teacher-forced target."""

    def __init__(self, encoder, decoder, config):
        super().__init__()
        self.encoder, self.decoder, self.config = encoder, decoder, config

    def forward(self, source, valid_lengths, target_input):
        state = self.decoder.init_state(self.encoder(source, valid_lengths), valid_lengths)
        return self.decoder(target_input, state)[0]


class TransformerSeq2Seq(EncoderDecoder):
    def __init__(self, c):
        d = c["hidden_size"]
        if c["embedding_size"] != d:
            raise ValueError("a transformer needs embedding_size = hidden_size")
        target = nn.Embedding(c["target_vocab_size"], d)
        source = target if c["share_embeddings"] else nn.Embedding(c["source_vocab_size"], d)
        if c["tie_embeddings"] or not c["scale_embedding"]:
            # Transduce starts a tied or unscaled embedding at N(0, 1/d), so logits and inputs start at unit scale.
            with torch.no_grad():
                for e in {id(target): target, id(source): source}.values():
                    nn.init.normal_(e.weight, 0, d ** -0.5)
        super().__init__(TransformerEncoder(c, source), TransformerDecoder(c, target), c)


# ---------------------------------------------------------------------------------------------------------------------
# GRU seq2seq (src/Transduce/Models/GruSeq2Seq.cs)
# ---------------------------------------------------------------------------------------------------------------------

class GruEncoder(nn.Module):
    def __init__(self, vocab, embedding_size, hidden, layers, dropout):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding_size)
        self.rnn = nn.GRU(embedding_size, hidden, layers, batch_first=True, dropout=dropout)

    def forward(self, source, valid_lengths):
        # Padding is packed away, so each row's final state is taken at its own last token.
        steps = source.shape[1]
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(source), valid_lengths.to(torch.int64).cpu(),
                                                   batch_first=True, enforce_sorted=False)
        packed_outputs, final_state = self.rnn(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(packed_outputs, batch_first=True, total_length=steps)
        return outputs, final_state


class GruState:
    """The fixed context (encoder's top-layer final state, (batch, hidden)) and the hidden state (layers, batch, hidden)."""

    def __init__(self, context, hidden):
        self.context, self.hidden = context, hidden


class GruDecoder(nn.Module):
    def __init__(self, vocab, embedding_size, hidden, layers, dropout):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding_size)
        self.rnn = nn.GRU(embedding_size + hidden, hidden, layers, batch_first=True, dropout=dropout)
        self.dense = nn.Linear(hidden, vocab)

    def init_state(self, encoded, valid_lengths):
        final = encoded[1]
        return GruState(final[-1], final)

    def select_rows(self, state, indices):
        return GruState(state.context.index_select(0, indices), state.hidden.index_select(1, indices))

    def forward(self, target, state):
        steps = target.shape[1]
        context = state.context.unsqueeze(1).expand(-1, steps, -1)
        outputs, hidden = self.rnn(torch.cat([self.embedding(target), context], 2), state.hidden)
        return self.dense(outputs), GruState(state.context, hidden)


class GruSeq2Seq(EncoderDecoder):
    def __init__(self, c):
        args = (c["embedding_size"], c["hidden_size"], c["layers"], c["dropout"])
        super().__init__(GruEncoder(c["source_vocab_size"], *args), GruDecoder(c["target_vocab_size"], *args), c)
        # d2l's init_seq2seq, as Transduce does it: Xavier-uniform for every non-embedding weight matrix.
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 2 and "embedding" not in name:
                    nn.init.xavier_uniform_(p)
