namespace Transduce.Data;

/// <summary>
/// A corpus file has malformed content. The message has the form <c>"{file}:{line}: {reason}"</c>.
/// </summary>
public sealed class CorpusFormatException : Exception
{
    /// <summary>Creates the exception for a problem at <paramref name="filePath"/>:<paramref name="lineNumber"/>.</summary>
    /// <param name="filePath">The file with the problem.</param>
    /// <param name="lineNumber">1-based line number of the problem.</param>
    /// <param name="reason">What is wrong, e.g. "missing tab between source and target".</param>
    /// <param name="innerException">Optional underlying exception.</param>
    public CorpusFormatException(string filePath, int lineNumber, string reason, Exception? innerException = null)
        : base($"{filePath}:{lineNumber}: {reason}", innerException)
    {
        FilePath = filePath;
        LineNumber = lineNumber;
        Reason = reason;
    }

    /// <summary>The file with the problem.</summary>
    public string FilePath { get; }

    /// <summary>1-based line number of the problem.</summary>
    public int LineNumber { get; }

    /// <summary>What is wrong, without the file and line prefix.</summary>
    public string Reason { get; }
}
