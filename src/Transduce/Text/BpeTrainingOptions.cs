namespace Transduce.Text;

/// <summary>Settings for <see cref="BpeTokenizer.Train"/>.</summary>
internal sealed record BpeTrainingOptions
{
    /// <summary>
    /// The smallest allowed <see cref="VocabSize"/>: the 4 reserved tokens, the 256 byte-fallback tokens and the
    /// word-start marker <c>▁</c>.
    /// </summary>
    public const int MinVocabSize = BpeTokenizer.FirstLearnedId;

    /// <summary>
    /// Target vocabulary size, counting everything: the 4 reserved tokens, the 256 byte tokens <c>&lt;0x00&gt;</c>…<c>&lt;0xFF&gt;</c>,
    /// the word-start marker, the base characters and the merged pieces. Training stops when this size is reached,
    /// or earlier when no pair occurs at least <see cref="MinPairFrequency"/> times. Default 8000.
    /// </summary>
    public int VocabSize { get; init; } = 8000;

    /// <summary>A pair of adjacent pieces is merged only if it occurs at least this often (default 2; values below 1 act like 1).</summary>
    public int MinPairFrequency { get; init; } = 2;

    /// <summary>
    /// A character becomes a base piece only if it occurs at least this often in the training text (default 2);
    /// rarer characters are encoded with byte-fallback tokens. If more characters qualify than the vocabulary can hold,
    /// the most frequent ones are kept.
    /// </summary>
    public int MinCharacterFrequency { get; init; } = 2;

    /// <summary>
    /// Whether pre-tokenisation also splits each space-delimited word into runs of letters, digits and other characters
    /// (punctuation, symbols), so that no piece mixes those classes (default true). Apostrophes and hyphens between two
    /// letters count as letters, so <c>l'homme</c> and <c>peut-être</c> stay single pre-tokens.
    /// The setting is stored in the model and applies to encoding too.
    /// </summary>
    public bool SplitPunctuation { get; init; } = true;

    /// <summary>Throws if a setting is out of range.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="VocabSize"/> is below <see cref="MinVocabSize"/>.</exception>
    public void Validate()
    {
        if (VocabSize < MinVocabSize)
        {
            throw new ArgumentOutOfRangeException(
                nameof(VocabSize), VocabSize,
                $"BPE vocabulary size must be at least {MinVocabSize} (4 reserved + 256 byte tokens + the word-start marker).");
        }
    }
}
