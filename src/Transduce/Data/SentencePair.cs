namespace Transduce.Data;

/// <summary>One source/target sentence pair read from a corpus.</summary>
/// <param name="Source">The source-language sentence (trimmed, otherwise as in the file).</param>
/// <param name="Target">The target-language sentence (trimmed, otherwise as in the file).</param>
/// <param name="LineNumber">1-based line number the pair was read from (0 for pairs made in memory).</param>
public sealed record SentencePair(string Source, string Target, int LineNumber = 0);
