using Transduce.Models.Gru;

namespace Transduce.Models.Bahdanau;

/// <summary>The config of <see cref="BahdanauSeq2Seq"/> (d2l §11.4): the recurrent sizes, the attention is as wide as the hidden state.</summary>
internal sealed record BahdanauConfig : RecurrentConfig
{
    /// <summary>The registered name.</summary>
    public const string Name = "bahdanau";

    /// <inheritdoc />
    public override string Architecture => Name;

    /// <summary>The Bahdanau-attention encoder–decoder's entry in <see cref="ModelRegistry"/>.</summary>
    public static ModelArchitecture Registration { get; } = ModelArchitecture.Of<BahdanauConfig>(Name,
        "d2l §11.4: GRU encoder; GRU decoder with additive (Bahdanau) attention over the encoder outputs", c => new BahdanauSeq2Seq(c), From<BahdanauConfig>);
}
