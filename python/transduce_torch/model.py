"""Transduce's models in PyTorch: the one model file of the package.

The modules follow src/Transduce/Models line by line (same operations in the same order) and carry Transduce's
parameter names, so a checkpoint's model.safetensors loads into them with load_state_dict(strict=True) and a state_dict
saved from them loads into Transduce unchanged.

build_model(config) -> torch.nn.Module
    A randomly initialised model (Transduce's initialisation) from a model configuration: the "model" object of a
    checkpoint's config.json (snake_case keys as written by Transduce; a whole config.json dict is accepted too).
    Architectures: "transformer" (TransformerSeq2Seq, with every spec choice of TransformerConfig that Transduce's
    families use: layer or RMS norms and their ε, embedding and final norms, attention scaling and head width, plain
    and gated feed-forwards with or without biases, sinusoidal (three layouts, with an offset), learned, no or T5's
    relative positions, output bias and scale) and "gru" (GruSeq2Seq). A choice it does not build is refused.

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
    """Transduce's ModelConfig defaults (src/Transduce/Models/ModelConfig.cs, Transformer/TransformerConfig.cs) under what
    the dict says, checked: a Transformer choice this twin does not build is refused, never run as another network."""
    if "model" in config and isinstance(config["model"], dict):
        config = config["model"]
    c = dict(MODEL_DEFAULTS)
    c.update(config)
    if c["decoder_layers"] is None:
        c["decoder_layers"] = c["layers"]
    if c["architecture"] == "transformer":
        for key, known in (("activation", FEED_FORWARDS), ("norm", NORMS), ("positions", POSITIONS),
                           ("positional_layout", SINUSOID_LAYOUTS)):
            if c[key] not in known:
                raise ValueError(f"model config: '{key}' '{c[key]}' is not implemented by the PyTorch twin "
                                 f"(known: {', '.join(known)})")
        # A key this twin does not know is a choice it does not build.
        unknown = sorted(set(config) - set(MODEL_DEFAULTS) - {"source_vocab_size", "target_vocab_size"})
        if unknown:
            raise ValueError(f"model config: '{unknown[0]}' is not implemented by the PyTorch twin")
        if c["final_norm"] is None:
            c["final_norm"] = c["pre_norm"]
        if c["head_size"] is None and c["hidden_size"] % c["heads"] != 0:
            raise ValueError(f"model config: 'hidden_size' {c['hidden_size']} must be divisible by 'heads' {c['heads']}")
    return c


# The Transformer's spec choices beyond d2l's (TransformerConfig.cs → TransformerSpec.cs), with their defaults. Every one
# is built here as the .NET modules build it.
TRANSFORMER_SPEC = {
    "head_size": None, "ffn_bias": True, "norm": "layer_norm", "norm_epsilon": 1e-5, "embedding_norm": False,
    "final_norm": None, "scale_attention": True, "output_bias": True, "output_scale": 1.0, "positions": "sinusoidal",
    "relative_buckets": 32, "relative_max_distance": 128, "position_offset": 0,
}

MODEL_DEFAULTS = {
    "architecture": "gru", "embedding_size": 256, "hidden_size": 256, "layers": 2, "dropout": 0.2, "pad_id": 0,
    "heads": 4, "ffn_size": 64, "activation": "relu", "pre_norm": False, "tie_embeddings": False,
    "share_embeddings": False, "attention_bias": False, "scale_embedding": True, "max_positions": 1024,
    "decoder_layers": None, "positional_layout": "interleaved", **TRANSFORMER_SPEC,
}


def _gelu_tanh(x):
    # FeedForwardKinds.GeluTanh's operations: ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
    inner = (x + x.pow(3) * 0.044715) * math.sqrt(2 / math.pi)
    return x * 0.5 * (inner.tanh() + 1)


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": _gelu_tanh, "silu": F.silu}

# FeedForwardKinds: a kind's activation and whether it is gated, W₂·(f(W₁x) ⊙ Vx) with V as "up".
FEED_FORWARDS = {
    "relu": ("relu", False), "gelu": ("gelu", False), "gelu_tanh": ("gelu_tanh", False), "swish": ("silu", False),
    "gated_relu": ("relu", True), "gated_gelu": ("gelu", True), "gated_gelu_tanh": ("gelu_tanh", True),
    "swiglu": ("silu", True),
}
NORMS = ("layer_norm", "rms_norm")
POSITIONS = ("sinusoidal", "learned", "none", "relative")
SINUSOID_LAYOUTS = ("interleaved", "halves", "fairseq")


def build_model(config):
    """A freshly initialised model for a model configuration dict (see the module docstring)."""
    c = model_config(config)
    if c["architecture"] == "transformer":
        return TransformerSeq2Seq(c)
    if c["architecture"] == "gru":
        return GruSeq2Seq(c)
    raise ValueError(f"architecture '{c['architecture']}' has no PyTorch implementation (known: {', '.join(ARCHITECTURES)})")


# ---------------------------------------------------------------------------------------------------------------------
# Transformer (src/Transduce/Models/Transformer/: TransformerSeq2Seq.cs, MultiHeadAttention.cs, PositionalEncoding.cs,
# RelativePositionBias.cs, Norms.cs, FeedForwardKind.cs)
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


class RmsNorm(nn.Module):
    """RmsNorm.cs (T5's T5LayerNorm): x / √(mean(x²) + ε) · γ, no mean, no bias; parameter 'weight'."""

    def __init__(self, size, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x):
        rms = x.square().mean(-1, keepdim=True).add(self.eps).rsqrt()
        return (x * rms) * self.weight


def make_norm(c):
    """Norms.Create: the spec's norm kind and ε over the model width."""
    if c["norm"] == "rms_norm":
        return RmsNorm(c["hidden_size"], c["norm_epsilon"])
    return nn.LayerNorm(c["hidden_size"], eps=c["norm_epsilon"])


class MultiHeadAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        hidden, heads, bias = c["hidden_size"], c["heads"], c["attention_bias"]
        self.heads = heads
        self.head_size = c["head_size"] if c["head_size"] is not None else hidden // heads
        self.scale_scores = c["scale_attention"]
        inner = heads * self.head_size
        self.W_q = nn.Linear(hidden, inner, bias=bias)
        self.W_k = nn.Linear(hidden, inner, bias=bias)
        self.W_v = nn.Linear(hidden, inner, bias=bias)
        self.W_o = nn.Linear(inner, hidden, bias=bias)
        self.dropout = nn.Dropout(c["dropout"])

    def split_heads(self, x):
        return x.reshape(x.shape[0], x.shape[1], self.heads, self.head_size).transpose(1, 2)

    def project_query(self, x):
        return self.split_heads(self.W_q(x))

    def project_key_value(self, keys, values):
        return self.split_heads(self.W_k(keys)), self.split_heads(self.W_v(values))

    def attend(self, q, k, v, mask, bias=None):
        """bias, when given, (1, heads, queries, keys), is added to the (scaled) scores: relative position biases."""
        scores = q.matmul(k.transpose(-2, -1))
        if self.scale_scores:
            scores = scores.div_(math.sqrt(self.head_size))
        if bias is not None:
            scores = scores + bias
        weights = masked_softmax(scores, mask)
        context = self.dropout(weights).matmul(v)                      # (b, h, q, d)
        merged = context.transpose(1, 2).reshape(context.shape[0], context.shape[2], self.heads * self.head_size)
        return self.W_o(merged)

    def forward(self, queries, keys, values, mask, bias=None):
        k, v = self.project_key_value(keys, values)
        return self.attend(self.project_query(queries), k, v, mask, bias)


class PositionalEncoding(nn.Module):
    """Adds rows offset + start … of the positions: a sinusoid table (a saved buffer "…positions.table", (1, rows,
    hidden), so a loaded model uses Transduce's own float32 values), a learned table (parameter "…positions.weight",
    (rows, hidden)), or nothing (positions 'none' and 'relative'). Rows = max_positions + position_offset."""

    def __init__(self, c):
        super().__init__()
        hidden, rows = c["hidden_size"], c["max_positions"] + c["position_offset"]
        self.offset, self.max_positions = c["position_offset"], c["max_positions"]
        table, weight = None, None
        if c["positions"] == "sinusoidal":
            layout = c["positional_layout"]
            table = _halves_table(hidden, rows) if layout == "halves" else \
                _fairseq_table(hidden, rows) if layout == "fairseq" else _interleaved_table(hidden, rows)
            table = table.unsqueeze(0)
        elif c["positions"] == "learned":
            weight = nn.Parameter(torch.empty(rows, hidden))
            with torch.no_grad():
                nn.init.normal_(weight, 0, hidden ** -0.5)
        self.register_buffer("table", table)
        self.register_parameter("weight", weight)

    def forward(self, x, start):
        steps = x.shape[1]
        if start + steps > self.max_positions:
            raise ValueError(f"sequence of {start + steps} positions exceeds the positional table ({self.max_positions}); "
                             "raise max_positions")
        if self.weight is not None:
            return x + self.weight[self.offset + start:self.offset + start + steps]
        if self.table is None:
            return x
        return x + self.table[:, self.offset + start:self.offset + start + steps]


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


def _fairseq_table(hidden, rows):
    # float32 throughout: sines of the d/2 frequencies exp(−i·ln 10000/(d/2 − 1)), then their cosines, a zero last column
    # when d is odd; row r is position r (read with the offset).
    half = hidden // 2
    frequencies = torch.arange(half, dtype=torch.float32).mul_(-math.log(10000) / max(1, half - 1)).exp_()
    angles = torch.arange(rows, dtype=torch.float32).unsqueeze(1) * frequencies.unsqueeze(0)
    table = torch.cat([angles.sin(), angles.cos()], 1)
    return torch.cat([table, torch.zeros(rows, 1)], 1) if hidden % 2 == 1 else table


def relative_buckets(relative, buckets, max_distance, bidirectional):
    """RelativePositionBias.Buckets: the bucket of each distance key − query (int64), in the same integer and float32
    arithmetic, so the boundaries fall where .NET's do."""
    result = torch.zeros_like(relative)
    if bidirectional:
        buckets //= 2
        result = result + relative.gt(0).to(torch.int64) * buckets
        relative = relative.abs()
    else:
        relative = -relative.clamp_max(0)
    max_exact = buckets // 2
    small = relative.lt(max_exact)
    large = (relative.to(torch.float32) / max_exact).log() / math.log(max_distance / max_exact) * (buckets - max_exact)
    large_buckets = (large.to(torch.int64) + max_exact).clamp_max(buckets - 1)
    return result + torch.where(small, relative, large_buckets)


class RelativePositionBias(nn.Module):
    """RelativePositionBias.cs (T5): a learned bias per head for the bucket of each relative distance, parameter 'weight'
    (buckets, heads); bidirectional in the encoder, causal in the decoder; one per stack, computed once per forward pass
    and shared by every block's self-attention."""

    def __init__(self, c, bidirectional):
        super().__init__()
        self.buckets, self.max_distance = c["relative_buckets"], c["relative_max_distance"]
        self.bidirectional = bidirectional
        self.weight = nn.Parameter(torch.empty(self.buckets, c["heads"]))
        with torch.no_grad():
            nn.init.normal_(self.weight, 0, c["hidden_size"] ** -0.5)

    def bias(self, query_start, queries, keys):
        """(1, heads, queries, keys): queries at positions query_start … over keys at 0 … keys − 1."""
        relative = torch.arange(keys, dtype=torch.int64).unsqueeze(0) - \
            torch.arange(query_start, query_start + queries, dtype=torch.int64).unsqueeze(1)
        index = relative_buckets(relative, self.buckets, self.max_distance, self.bidirectional).flatten()
        values = self.weight.index_select(0, index).view(queries, keys, -1)   # (queries, keys, heads)
        return values.permute(2, 0, 1).unsqueeze(0)


class PositionWiseFfn(nn.Module):
    """Linear → activation → Linear, or gated: dense2(f(dense1(x)) ⊙ up(x))."""

    def __init__(self, c):
        super().__init__()
        hidden, ffn, bias = c["hidden_size"], c["ffn_size"], c["ffn_bias"]
        function, gated = FEED_FORWARDS[c["activation"]]
        self.dense1 = nn.Linear(hidden, ffn, bias=bias)
        self.up = nn.Linear(hidden, ffn, bias=bias) if gated else None
        self.dense2 = nn.Linear(ffn, hidden, bias=bias)
        self.activation = ACTIVATIONS[function]

    def forward(self, x):
        h = self.activation(self.dense1(x))
        if self.up is not None:
            h = h * self.up(x)
        return self.dense2(h)


class Residual(nn.Module):
    """Post-norm N(x + dropout(f(x))) or pre-norm x + dropout(f(N(x)))."""

    def __init__(self, c):
        super().__init__()
        self.norm = make_norm(c)
        self.dropout = nn.Dropout(c["dropout"])
        self.pre_norm = c["pre_norm"]

    def forward(self, x, sublayer):
        if self.pre_norm:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class TransformerEncoderBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = MultiHeadAttention(c)
        self.addNorm1 = Residual(c)
        self.ffn = PositionWiseFfn(c)
        self.addNorm2 = Residual(c)

    def forward(self, x, mask, position_bias=None):
        y = self.addNorm1(x, lambda h: self.attention(h, h, h, mask, position_bias))
        return self.addNorm2(y, self.ffn)


class TransformerStack(nn.Module):
    """What the encoder and the decoder share (TransformerEmbedding.Embed): embedding × scale + positions, the
    embedding norm where the spec has one, dropout; the final norm after the blocks."""

    def __init__(self, c, embedding, bidirectional):
        super().__init__()
        self.embedding = embedding
        self.positions = PositionalEncoding(c)
        self.embeddingNorm = make_norm(c) if c["embedding_norm"] else None
        self.dropout = nn.Dropout(c["dropout"])
        self.relativeBias = RelativePositionBias(c, bidirectional) if c["positions"] == "relative" else None
        self.finalNorm = make_norm(c) if c["final_norm"] else None
        self.embedding_scale = math.sqrt(c["hidden_size"]) if c["scale_embedding"] else 1.0

    def embed(self, tokens, start):
        x = self.positions(self.embedding(tokens).mul_(self.embedding_scale), start)
        if self.embeddingNorm is not None:
            x = self.embeddingNorm(x)
        return self.dropout(x)


class TransformerEncoder(TransformerStack):
    def __init__(self, c, embedding):
        super().__init__(c, embedding, bidirectional=True)
        self.blocks = nn.ModuleList([TransformerEncoderBlock(c) for _ in range(c["layers"])])

    def forward(self, source, valid_lengths):
        steps = source.shape[1]
        mask = valid_length_mask(valid_lengths, steps)
        x = self.embed(source, 0)
        bias = None if self.relativeBias is None else self.relativeBias.bias(0, steps, steps)
        for block in self.blocks:
            x = block(x, mask, bias)
        if self.finalNorm is not None:
            x = self.finalNorm(x)
        return x, None


class TransformerDecoderBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.SelfAttention = MultiHeadAttention(c)
        self.addNorm1 = Residual(c)
        self.CrossAttention = MultiHeadAttention(c)
        self.addNorm2 = Residual(c)
        self.ffn = PositionWiseFfn(c)
        self.addNorm3 = Residual(c)

    def forward(self, x, past_keys, past_values, causal, cross_keys, cross_values, source_mask, position_bias=None):
        """Returns the block's output and the self-attention keys/values grown by x's positions (the cache)."""
        grown = []

        def self_attention(h):
            q = self.SelfAttention.project_query(h)
            k, v = self.SelfAttention.project_key_value(h, h)
            if past_keys is not None:
                k, v = torch.cat([past_keys, k], 2), torch.cat([past_values, v], 2)
            grown.extend((k, v))
            return self.SelfAttention.attend(q, k, v, causal, position_bias)

        y = self.addNorm1(x, self_attention)
        z = self.addNorm2(y, lambda h: self.CrossAttention.attend(self.CrossAttention.project_query(h), cross_keys, cross_values, source_mask))
        return self.addNorm3(z, self.ffn), grown[0], grown[1]


class TransformerState:
    """Source mask, per-layer cross-attention keys/values (computed once), per-layer self-attention cache, steps."""

    def __init__(self, source_mask, cross_keys, cross_values, self_keys, self_values, steps):
        self.source_mask, self.cross_keys, self.cross_values = source_mask, cross_keys, cross_values
        self.self_keys, self.self_values, self.steps = self_keys, self_values, steps


class TransformerDecoder(TransformerStack):
    def __init__(self, c, embedding):
        super().__init__(c, embedding, bidirectional=False)
        self.blocks = nn.ModuleList([TransformerDecoderBlock(c) for _ in range(c["decoder_layers"])])
        self.dense = nn.Linear(c["hidden_size"], c["target_vocab_size"], bias=c["output_bias"])
        if c["tie_embeddings"]:
            self.dense.weight = embedding.weight
        self.output_scale = c["output_scale"]

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
        # One new position may see every cached key: no causal mask (as .NET).
        causal = None if steps == 1 else causal_mask(steps, state.steps)
        x = self.embed(target, state.steps)
        bias = None if self.relativeBias is None else self.relativeBias.bias(state.steps, steps, state.steps + steps)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, state.self_keys[i], state.self_values[i], causal,
                            state.cross_keys[i], state.cross_values[i], state.source_mask, bias)
            keys.append(k)
            values.append(v)
        if self.finalNorm is not None:
            x = self.finalNorm(x)
        if self.output_scale != 1.0:
            x = x * self.output_scale
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
