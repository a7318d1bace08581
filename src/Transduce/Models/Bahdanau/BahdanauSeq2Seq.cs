using TorchSharp;
using TorchSharp.Modules;
using Transduce.Architecture;
using static TorchSharp.torch;

using Transduce.Models.Gru;

namespace Transduce.Models.Bahdanau;

/// <summary>
/// State of <see cref="BahdanauDecoder"/>: encoder outputs (the attention memory), its key mask and the GRU hidden state.
/// </summary>
/// <param name="Memory">Encoder outputs, (batch, source steps, hidden).</param>
/// <param name="Mask">Key mask from the source valid lengths, (batch, 1, 1, source steps).</param>
/// <param name="Hidden">GRU state, (layers, batch, hidden).</param>
internal sealed record BahdanauState(Tensor Memory, Tensor Mask, Tensor Hidden) : ICrossAttentionState
{
    /// <inheritdoc />
    public IEnumerable<Tensor> Tensors => [Memory, Mask, Hidden];

    /// <inheritdoc />
    public IReadOnlyList<Tensor> CrossAttention { get; init; } = [];
}

/// <summary>
/// GRU decoder with additive attention (d2l §11.4): at each step the query is the previous top-layer hidden
/// state, the context is its attention over the encoder outputs, and the GRU input is [context; embedding].
/// </summary>
internal sealed class BahdanauDecoder : Decoder<BahdanauState>
{
    private readonly AdditiveAttention attention;
    private readonly Embedding embedding;
    private readonly GRU rnn;
    private readonly Linear dense;

    /// <summary>Creates the decoder.</summary>
    public BahdanauDecoder(int vocabSize, int embeddingSize, int hiddenSize, int layers, double dropout) : base(nameof(BahdanauDecoder))
    {
        attention = new AdditiveAttention(hiddenSize, hiddenSize, hiddenSize, dropout);
        embedding = nn.Embedding(vocabSize, embeddingSize);
        rnn = nn.GRU(embeddingSize + hiddenSize, hiddenSize, layers, batchFirst: true, dropout: dropout);
        dense = nn.Linear(hiddenSize, vocabSize);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override BahdanauState InitState(EncoderOutput encoderOutput, Tensor sourceValidLengths)
    {
        var final = encoderOutput.FinalState
            ?? throw new ArgumentException("BahdanauDecoder needs an encoder with a final recurrent state");
        var mask = AttentionMasks.FromValidLengths(sourceValidLengths, encoderOutput.Outputs.shape[1]);
        return new BahdanauState(encoderOutput.Outputs, mask, final);
    }

    /// <inheritdoc />
    public override BahdanauState SelectRows(BahdanauState state, Tensor batchIndices) => new(
        state.Memory.index_select(0, batchIndices), state.Mask.index_select(0, batchIndices), state.Hidden.index_select(1, batchIndices));

    /// <inheritdoc />
    public override (Tensor Logits, BahdanauState State) forward(Tensor target, BahdanauState state)
    {
        using var scope = NewDisposeScope();
        var embedded = embedding.call(target);                  // (b, t, e)
        var hidden = state.Hidden;
        var outputs = new List<Tensor>();
        var attended = new List<Tensor>();
        for (long t = 0; t < embedded.shape[1]; t++)
        {
            var query = hidden[-1].unsqueeze(1);                // (b, 1, h)
            var (context, weights) = attention.call(query, state.Memory, state.Memory, state.Mask);
            attended.Add(weights);                              // (b, 1, source steps)
            var x = cat([context, embedded.narrow(1, t, 1)], -1);
            var (output, next) = rnn.call(x, hidden);
            outputs.Add(output);
            hidden = next;
        }
        var logits = dense.call(cat(outputs, 1));
        var crossAttention = cat(attended, 1).unsqueeze(1);    // one layer, one head: (b, 1, t, source steps)
        scope.MoveToOuter(logits, hidden, crossAttention);
        return (logits, state with { Hidden = hidden, CrossAttention = [crossAttention] });
    }
}

/// <summary>The d2l §11.4 model: <see cref="GruEncoder"/> + <see cref="BahdanauDecoder"/>.</summary>
internal sealed class BahdanauSeq2Seq : EncoderDecoder<BahdanauState>
{
    /// <summary>Builds the model from <paramref name="config"/> with d2l's Xavier initialisation.</summary>
    public BahdanauSeq2Seq(BahdanauConfig config)
        : base(nameof(BahdanauSeq2Seq),
            new GruEncoder(config.SourceVocabSize, config.EmbeddingSize, config.HiddenSize, config.Layers, config.Dropout),
            new BahdanauDecoder(config.TargetVocabSize, config.EmbeddingSize, config.HiddenSize, config.Layers, config.Dropout))
    {
        GruSeq2Seq.XavierInit(this);
    }
}
