namespace Transduce.Text;

/// <summary>The ids of the special tokens that batching inserts and decoding starts and stops with.</summary>
/// <param name="Pad">Padding id.</param>
/// <param name="Bos">Beginning-of-sequence id (first decoder input).</param>
/// <param name="Eos">End-of-sequence id (appended to source and target; decoding stops at it).</param>
/// <param name="AppendEos">
/// True when batching appends <paramref name="Eos"/> to each sequence; false when the family's encoding gives each sequence
/// whole, its end included (NLLB's legacy layout <c>pieces &lt;/s&gt; [lang]</c> ends after the end token).
/// </param>
internal readonly record struct SpecialIds(int Pad, int Bos, int Eos, bool AppendEos = true);
