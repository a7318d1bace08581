using TorchSharp;
using TorchSharp.Modules;
using Transduce.Architecture;
using Transduce.Models;
using static TorchSharp.torch;

namespace CustomModel;

/// <summary>
/// The model's configuration, as <c>config.json</c> stores it: the sizes every model has (from <see cref="ModelConfig"/>)
/// and one setting of its own, how attention scores a source position.
/// </summary>
public sealed record LuongConfig : ModelConfig
{
    /// <summary>The name run configurations and checkpoints use.</summary>
    public const string Name = "luong";

    /// <inheritdoc />
    public override string Architecture => Name;

    /// <summary><c>dot</c>: score = hᵀs (Luong et al., 2015); <c>general</c>: score = hᵀWs.</summary>
    public string Score { get; init; } = "dot";

    /// <summary>What the library needs to know about the model: its name, how to build it, how to configure it.</summary>
    public static ModelArchitecture Registration { get; } = ModelArchitecture.Of<LuongConfig>(Name,
        "bidirectional LSTM encoder; LSTM decoder with Luong (dot-product) attention over the encoder outputs",
        config => new LuongSeq2Seq(config),
        settings => new LuongConfig
        {
            EmbeddingSize = settings.EmbeddingSize,
            HiddenSize = settings.HiddenSize,
            Layers = settings.Layers,
            Dropout = settings.Dropout,
            // A setting of this model only: model.extra.score in a run configuration (ModelOptions.Extra in code).
            Score = settings.Extra.TryGetValue("score", out var score) ? score : "dot",
        });

    /// <inheritdoc />
    public override void Validate()
    {
        base.Validate();
        if (HiddenSize % 2 != 0) throw new ArgumentException($"model config: 'hidden_size' must be even, half per encoder direction (got {HiddenSize})");
        if (Score is not ("dot" or "general")) throw new ArgumentException($"model config: 'score' must be dot or general (got '{Score}')");
    }

    /// <inheritdoc />
    public override IEnumerable<(string Keys, long Count)> MinimumParameterTerms()
    {
        yield return ("source_vocab_size × embedding_size", (long)SourceVocabSize * EmbeddingSize);
        yield return ("target_vocab_size × embedding_size", (long)TargetVocabSize * EmbeddingSize);
        yield return ("target_vocab_size × hidden_size", (long)TargetVocabSize * HiddenSize);
    }
}

/// <summary>
/// A bidirectional LSTM over the source. Each direction is half the hidden width, so an output (both directions side by
/// side) is as wide as the decoder's state; the final states of the two directions, side by side, start the decoder.
/// </summary>
public sealed class BiLstmEncoder : Encoder
{
    private readonly Embedding embedding;
    private readonly Dropout dropout;
    private readonly LSTM lstm;

    /// <summary>Creates the encoder.</summary>
    public BiLstmEncoder(LuongConfig config) : base(nameof(BiLstmEncoder))
    {
        embedding = nn.Embedding(config.SourceVocabSize, config.EmbeddingSize, padding_idx: config.PadId);
        dropout = nn.Dropout(config.Dropout);
        lstm = nn.LSTM(config.EmbeddingSize, config.HiddenSize / 2, config.Layers, batchFirst: true, dropout: config.Dropout, bidirectional: true);
        RegisterComponents();
    }

    /// <summary>Encodes (batch, steps) padded source ids; <paramref name="validLengths"/> says where each row ends.</summary>
    public override EncoderOutput forward(Tensor source, Tensor validLengths)
    {
        using var scope = NewDisposeScope();
        long steps = source.shape[1];
        var embedded = dropout.call(embedding.call(source));
        // Packing skips the padding, so each direction's final state is taken at the row's own last token.
        var packed = nn.utils.rnn.pack_padded_sequence(embedded, validLengths.to(ScalarType.Int64, CPU), batch_first: true, enforce_sorted: false);
        var (packedOutputs, h, c) = lstm.call(packed);
        var (outputs, _) = nn.utils.rnn.pad_packed_sequence(packedOutputs, batch_first: true, total_length: steps);
        // h and c are (layers × 2 directions, batch, hidden / 2): per layer, the two directions side by side.
        Tensor Joined(Tensor state) => state.view(-1, 2, state.shape[1], state.shape[2]).permute(0, 2, 1, 3).reshape(state.shape[0] / 2, state.shape[1], -1);
        // One tensor carries both: (layers, batch, 2 × hidden), the hidden state then the cell.
        var final = cat([Joined(h), Joined(c)], -1);
        return new EncoderOutput(scope.MoveToOuter(outputs), scope.MoveToOuter(final));
    }
}

/// <summary>
/// The decoder's state: what it attends over and its LSTM state. It also reports the attention weights of the step that
/// made it (<see cref="ICrossAttentionState"/>), which gives translations their attention maps.
/// </summary>
/// <param name="Memory">Encoder outputs, (batch, source steps, hidden).</param>
/// <param name="Padding">True at padded source positions, (batch, 1, source steps).</param>
/// <param name="Hidden">LSTM hidden state, (layers, batch, hidden).</param>
/// <param name="Cell">LSTM cell state, (layers, batch, hidden).</param>
public sealed record LuongState(Tensor Memory, Tensor Padding, Tensor Hidden, Tensor Cell) : ICrossAttentionState
{
    /// <inheritdoc />
    public IEnumerable<Tensor> Tensors => [Memory, Padding, Hidden, Cell];

    /// <inheritdoc />
    public IReadOnlyList<Tensor> CrossAttention { get; init; } = [];
}

/// <summary>
/// An LSTM over the target; at every step its top hidden state h scores each source position (hᵀs), the softmax of the
/// scores weighs the encoder outputs into a context c, and tanh(W[c; h]) predicts the next token.
/// </summary>
public sealed class LuongDecoder : Decoder<LuongState>
{
    private readonly Embedding embedding;
    private readonly Dropout dropout;
    private readonly LSTM lstm;
    private readonly Linear? scoreWeight;
    private readonly Linear combine;
    private readonly Linear output;

    /// <summary>Creates the decoder.</summary>
    public LuongDecoder(LuongConfig config) : base(nameof(LuongDecoder))
    {
        int h = config.HiddenSize;
        embedding = nn.Embedding(config.TargetVocabSize, config.EmbeddingSize, padding_idx: config.PadId);
        dropout = nn.Dropout(config.Dropout);
        lstm = nn.LSTM(config.EmbeddingSize, h, config.Layers, batchFirst: true, dropout: config.Dropout);
        scoreWeight = config.Score == "general" ? nn.Linear(h, h, hasBias: false) : null;
        combine = nn.Linear(2 * h, h, hasBias: false);
        output = nn.Linear(h, config.TargetVocabSize);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override LuongState InitState(EncoderOutput encoderOutput, Tensor sourceValidLengths)
    {
        var final = encoderOutput.FinalState ?? throw new ArgumentException("LuongDecoder needs the encoder's final state");
        var (hidden, cell) = final.chunk(2, -1) is [var first, var second] ? (first, second) : throw new InvalidOperationException();
        long steps = encoderOutput.Outputs.shape[1];
        var positions = arange(steps, device: sourceValidLengths.device).unsqueeze(0);
        var padding = positions.ge(sourceValidLengths.to(ScalarType.Int64).unsqueeze(1)).unsqueeze(1);
        return new LuongState(encoderOutput.Outputs, padding, hidden.contiguous(), cell.contiguous());
    }

    /// <inheritdoc />
    public override LuongState SelectRows(LuongState state, Tensor batchIndices) => new(
        state.Memory.index_select(0, batchIndices), state.Padding.index_select(0, batchIndices),
        state.Hidden.index_select(1, batchIndices), state.Cell.index_select(1, batchIndices));

    /// <summary>
    /// Target ids (batch, steps) — the whole teacher-forced target in training, one column a step when decoding — to
    /// logits (batch, steps, target vocabulary) and the state after the last of them.
    /// </summary>
    public override (Tensor Logits, LuongState State) forward(Tensor target, LuongState state)
    {
        using var scope = NewDisposeScope();
        var embedded = dropout.call(embedding.call(target));
        var (queries, hidden, cell) = lstm.call(embedded, (state.Hidden, state.Cell));    // (batch, steps, hidden)
        // Without input feeding the LSTM does not see the attention, so every step attends at once.
        var keys = scoreWeight is null ? state.Memory : scoreWeight.call(state.Memory);
        var scores = queries.bmm(keys.transpose(1, 2)).masked_fill(state.Padding, float.NegativeInfinity);
        var weights = scores.softmax(-1);                                                  // (batch, steps, source steps)
        var context = weights.bmm(state.Memory);
        var attentional = combine.call(cat([context, queries], -1)).tanh();
        var logits = output.call(dropout.call(attentional));
        var attention = weights.unsqueeze(1);                                              // one layer, one head
        scope.MoveToOuter(logits, hidden, cell, attention);
        return (logits, state with { Hidden = hidden, Cell = cell, CrossAttention = [attention] });
    }
}

/// <summary>The whole model: <see cref="BiLstmEncoder"/> and <see cref="LuongDecoder"/>, composed as d2l §10.6 composes them.</summary>
public sealed class LuongSeq2Seq : EncoderDecoder<LuongState>
{
    /// <summary>Builds a freshly initialised model from <paramref name="config"/>.</summary>
    public LuongSeq2Seq(LuongConfig config)
        : base(nameof(LuongSeq2Seq), new BiLstmEncoder(config), new LuongDecoder(config)) { }
}
