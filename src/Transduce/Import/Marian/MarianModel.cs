using Transduce.Data;
using Transduce.Import.HuggingFace;
using Transduce.Inference;
using static TorchSharp.torch;

using Transduce.Models;
using Transduce.Models.Transformer;
using Transduce.Text;

namespace Transduce.Import.Marian;

/// <summary>
/// A Hugging Face MarianMT model loaded by <see cref="MarianImport.Load"/>: the <see cref="HfTransformerModel"/> and its
/// vocabularies.
/// </summary>
internal sealed class MarianModel : HfTransformerModel
{
    /// <summary>Source piece → id (<c>vocab.json</c>).</summary>
    public IReadOnlyDictionary<string, int> SourceVocabulary { get; }

    /// <summary>Target piece → id (<c>vocab.json</c>, or <c>target_vocab.json</c> for separate vocabularies).</summary>
    public IReadOnlyDictionary<string, int> TargetVocabulary { get; }

    internal MarianModel(TransformerSeq2Seq model, TransformerConfig config, HfGenerationConfig generation,
        IReadOnlyDictionary<string, int> sourceVocabulary, IReadOnlyDictionary<string, int> targetVocabulary)
        : base(model, config, generation)
    {
        SourceVocabulary = sourceVocabulary;
        TargetVocabulary = targetVocabulary;
    }
}
