using Transduce.Import.HuggingFace;
using Transduce.Models.Transformer;

namespace Transduce.Import.M2M100;

/// <summary>
/// An NLLB / M2M100 model loaded by <see cref="M2M100Import.Load"/>: the <see cref="HfTransformerModel"/> and its tokenizer.
/// Decoding starts from <c>decoder_start_token_id</c> (<c>&lt;/s&gt;</c>) and, as transformers' translation pipeline asks,
/// forces the target language code as the first generated token (<see cref="ForTarget"/>).
/// </summary>
internal sealed class M2M100Model : HfTransformerModel
{
    internal M2M100Model(TransformerSeq2Seq model, TransformerConfig config, HfGenerationConfig generation, MultilingualTokenizer tokenizer)
        : base(model, config, generation) => Tokenizer = tokenizer;

    /// <summary>The tokenizer of the folder.</summary>
    public MultilingualTokenizer Tokenizer { get; }

    /// <summary>The decoding settings with <c>forced_bos_token_id</c> = <paramref name="targetLanguage"/>'s code.</summary>
    public HfGenerationConfig ForTarget(string targetLanguage) => Generation with { ForcedBosTokenId = Tokenizer.LanguageId(targetLanguage) };
}
