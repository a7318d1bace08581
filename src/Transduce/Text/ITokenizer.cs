namespace Transduce.Text;

/// <summary>One token of encoded text: its id in the tokenizer's <see cref="ITokenizer.Vocabulary"/> and its surface form.</summary>
/// <param name="Id">The id the model sees (<see cref="Vocabulary.UnkId"/> for a token the vocabulary lacks).</param>
/// <param name="Value">The token as it stands in the text (a word as typed, a subword piece), even when <paramref name="Id"/> is unknown.</param>
internal readonly record struct EncodedToken(int Id, string Value);

/// <summary>
/// Turns (normalised) text into the token ids of one side of a model and target ids back into text. The word, BPE and
/// SentencePiece tokenizers implement it; a <see cref="TextPipeline"/> holds one per side and never looks inside.
/// </summary>
/// <remarks>
/// Ids are those of <see cref="Vocabulary"/>: the reserved <c>&lt;pad&gt; &lt;bos&gt; &lt;eos&gt; &lt;unk&gt;</c> first.
/// Encoding adds neither <c>&lt;bos&gt;</c> nor <c>&lt;eos&gt;</c>. Implementations are immutable and thread-safe.
/// </remarks>
internal interface ITokenizer
{
    /// <summary>The id space of this tokenizer: what the model's embedding and output rows stand for.</summary>
    Vocabulary Vocabulary { get; }

    /// <summary>The ids of the tokens of <paramref name="text"/>.</summary>
    int[] EncodeToIds(string text);

    /// <summary>The tokens of <paramref name="text"/> with their ids and surface forms (for display, e.g. attention maps).</summary>
    IReadOnlyList<EncodedToken> EncodeToTokens(string text);

    /// <summary>How many tokens <paramref name="text"/> gives (the length of <see cref="EncodeToIds"/>).</summary>
    int CountTokens(string text);

    /// <summary>
    /// The text of target ids: stops at the first <c>&lt;eos&gt;</c>, skips <c>&lt;pad&gt;</c> and <c>&lt;bos&gt;</c>; an
    /// <c>&lt;unk&gt;</c> shows as the tokenizer writes unknown tokens.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside the vocabulary.</exception>
    string Decode(IEnumerable<int> ids);

    /// <summary>
    /// The text of <paramref name="tokens"/> by their surface forms (<see cref="EncodedToken.Value"/>), so a token the
    /// vocabulary lacks comes back as written: <c>DecodeTokens(EncodeToTokens(text))</c> is the text as a model trained
    /// with this tokenizer is meant to reproduce it.
    /// </summary>
    string DecodeTokens(IEnumerable<EncodedToken> tokens);
}
