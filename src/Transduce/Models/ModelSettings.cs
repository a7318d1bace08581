namespace Transduce.Models;

/// <summary>
/// The model knobs that the command line, the training presets and the run configuration's <c>model</c> section speak
/// in. Each architecture takes the ones it has (the <c>configure</c> function of <see cref="ModelArchitecture.Of"/>) and
/// ignores the rest; an architecture's own knobs come in <see cref="Extra"/>.
/// </summary>
/// <param name="EmbeddingSize">Embedding width (a Transformer uses its hidden width).</param>
/// <param name="HiddenSize">Hidden (model) width.</param>
/// <param name="Layers">Recurrent layers, or Transformer blocks per side.</param>
/// <param name="Heads">Attention heads.</param>
/// <param name="FfnSize">Inner width of a Transformer's feed-forward networks.</param>
/// <param name="Activation">Feed-forward activation (<c>relu</c>, <c>gelu</c>, <c>gelu_tanh</c>, <c>swish</c>).</param>
/// <param name="PreNorm">Layer norm before each sub-layer instead of after the residual sum.</param>
/// <param name="TieEmbeddings">The output projection shares the target embedding matrix.</param>
/// <param name="ShareEmbeddings">Encoder and decoder share one embedding (needs one joint vocabulary).</param>
/// <param name="Dropout">Dropout probability used while training.</param>
public sealed record ModelSettings(
    int EmbeddingSize = 256, int HiddenSize = 256, int Layers = 2, int Heads = 4, int FfnSize = 64, string Activation = "relu",
    bool PreNorm = false, bool TieEmbeddings = false, bool ShareEmbeddings = false, double Dropout = 0.2)
{
    /// <summary>
    /// Settings of a registered architecture that the common ones above do not cover, by key, as text
    /// (<c>model.extra</c> in a run configuration, <see cref="Training.ModelOptions.Extra"/> in code): the architecture's
    /// <c>configure</c> function parses the ones it knows. Empty for the built-in architectures.
    /// </summary>
    public IReadOnlyDictionary<string, string> Extra { get; init; } = new Dictionary<string, string>();
}
