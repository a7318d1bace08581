namespace Transduce.Text;

/// <summary>The ids of the special tokens that batching inserts and decoding starts and stops with.</summary>
/// <param name="Pad">Padding id.</param>
/// <param name="Bos">Beginning-of-sequence id (first decoder input).</param>
/// <param name="Eos">End-of-sequence id (appended to source and target).</param>
internal readonly record struct SpecialIds(int Pad, int Bos, int Eos);
