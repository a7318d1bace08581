using System.Buffers;
using System.Text.Unicode;

namespace Transduce.Data;

/// <summary>Options for reading a parallel corpus.</summary>
public sealed record CorpusReadOptions
{
    /// <summary>
    /// When true, malformed lines are skipped and counted in <see cref="CorpusReadResult.SkippedLines"/>;
    /// when false (the default), the first malformed line throws <see cref="CorpusFormatException"/>.
    /// </summary>
    public bool SkipInvalid { get; init; }

    /// <summary>
    /// When set, reading stops after this many valid pairs (d2l uses the first N pairs). Must not be negative.
    /// </summary>
    public int? MaxPairs { get; init; }
}

/// <summary>The outcome of reading a parallel corpus.</summary>
/// <param name="Pairs">The valid sentence pairs, in file order.</param>
/// <param name="SkippedLines">Number of malformed lines skipped (only non-zero with <see cref="CorpusReadOptions.SkipInvalid"/>).</param>
/// <param name="SkipReasons">The first (at most <see cref="ParallelCorpus.MaxSkipReasons"/>) skip reasons, each <c>"file:line: reason"</c>.</param>
public sealed record CorpusReadResult(IReadOnlyList<SentencePair> Pairs, int SkippedLines, IReadOnlyList<string> SkipReasons);

/// <summary>
/// Readers for sentence-aligned parallel corpora. Input must be strict UTF-8: invalid byte sequences are
/// reported with the file and 1-based line number. A UTF-8 byte-order mark at the start of a file and
/// '\r' before '\n' are accepted. Source and target sentences are trimmed of surrounding whitespace.
/// </summary>
public static class ParallelCorpus
{
    /// <summary>The maximum number of reasons kept in <see cref="CorpusReadResult.SkipReasons"/>.</summary>
    public const int MaxSkipReasons = 20;

    /// <summary>The file looked for first by <see cref="Read"/> when given a directory.</summary>
    public const string DefaultTsvName = "fra.txt";

    /// <summary>The file looked for second by <see cref="Read"/> when given a directory.</summary>
    public const string FallbackTsvName = "train.tsv";

    /// <summary>
    /// Reads a corpus from a file (as <see cref="ReadTsv"/>) or from a directory, in which case
    /// <c>fra.txt</c> is read if present, otherwise <c>train.tsv</c>.
    /// </summary>
    /// <param name="path">A tab-separated corpus file, or a directory containing one.</param>
    /// <param name="options">Read options; defaults if null.</param>
    /// <returns>The pairs read.</returns>
    /// <exception cref="FileNotFoundException">The path does not exist, or the directory has neither file.</exception>
    /// <exception cref="CorpusFormatException">A line is malformed and <see cref="CorpusReadOptions.SkipInvalid"/> is off.</exception>
    public static CorpusReadResult Read(string path, CorpusReadOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
        {
            foreach (string name in new[] { DefaultTsvName, FallbackTsvName })
            {
                string candidate = Path.Combine(path, name);
                if (File.Exists(candidate))
                {
                    return ReadTsv(candidate, options);
                }
            }
            throw new FileNotFoundException(
                $"No corpus file in directory {path}: looked for {DefaultTsvName} and {FallbackTsvName}.");
        }
        return ReadTsv(path, options);
    }

    /// <summary>
    /// Reads a tab-separated corpus in the Tatoeba/manythings <c>fra.txt</c> style: one pair per line,
    /// <c>source&lt;TAB&gt;target</c>, optionally followed by a third column (manythings' attribution), which is
    /// ignored. The first line fixes the file's columns (two or three); a line with another number of tabs is an error,
    /// as is a control character other than tab in a line (a NUL, an escape): both mean the file is not what it claims.
    /// An empty piece after the final newline is not a line; any other empty line is an error.
    /// </summary>
    /// <param name="path">The corpus file.</param>
    /// <param name="options">Read options; defaults if null.</param>
    /// <returns>The pairs read.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="CorpusFormatException">
    /// A line is empty, has no tab, has an empty source or target, or is not valid UTF-8, and
    /// <see cref="CorpusReadOptions.SkipInvalid"/> is off.
    /// </exception>
    public static CorpusReadResult ReadTsv(string path, CorpusReadOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var collector = new Collector(options);
        EnsureFileExists(path);
        var pairs = new List<SentencePair>();
        using var reader = new Utf8LineReader(path);
        int? columns = null;   // fixed by the first well-formed line
        while (!collector.IsFull && NextTsv(reader, path, collector, ref columns, out var pair))
            if (pair is not null) pairs.Add(pair);
        return collector.ToResult(pairs);
    }

    /// <summary>
    /// Reads the next line of a tab-separated corpus (as <see cref="ReadTsv"/> does): false at the end of the file;
    /// otherwise <paramref name="pair"/> is the line's pair, or null when the line was skipped.
    /// </summary>
    private static bool NextTsv(Utf8LineReader reader, string path, Collector collector, ref int? columns, out SentencePair? pair)
    {
        pair = null;
        if (!reader.TryReadLine(out ReadOnlySpan<byte> bytes)) return false;
        int lineNumber = reader.LineNumber;
        if (!collector.TryDecode(path, lineNumber, bytes, 0, out ReadOnlySpan<char> line))
        {
            return true;
        }
        if (line.IsWhiteSpace())
        {
            collector.Fail(path, lineNumber, "empty line", empty: true);
            return true;
        }
        int tab = line.IndexOf('\t');
        if (tab < 0)
        {
            collector.Fail(path, lineNumber, "missing tab between source and target");
            return true;
        }
        if (ControlCharacter(line) is int at)
        {
            collector.Fail(path, lineNumber, $"control character U+{(int)line[at]:X4} at column {at + 1}; a sentence holds text only");
            return true;
        }
        int fields = line.Count('\t') + 1;
        if (fields > 3)
        {
            collector.Fail(path, lineNumber, $"{fields} tab-separated fields; expected source<TAB>target, optionally followed by an attribution column");
            return true;
        }
        columns ??= fields;
        if (fields != columns)
        {
            collector.Fail(path, lineNumber, $"{fields} tab-separated fields, but the file's first line has {columns}: a tab inside a sentence, or lines from another file?");
            return true;
        }
        ReadOnlySpan<char> source = line[..tab].Trim();
        ReadOnlySpan<char> rest = line[(tab + 1)..];
        int nextTab = rest.IndexOf('\t');
        ReadOnlySpan<char> target = (nextTab < 0 ? rest : rest[..nextTab]).Trim();
        pair = collector.PairUnlessEmpty(lineNumber, source, (path, "empty source sentence"), target, (path, "empty target sentence"));
        return true;
    }

    /// <summary>
    /// Reads a corpus stored as two line-aligned plain-text files, one sentence per line. Both files must
    /// have the same number of lines; this is checked even when <see cref="CorpusReadOptions.MaxPairs"/>
    /// stops reading pairs early.
    /// </summary>
    /// <param name="sourcePath">The source-language file.</param>
    /// <param name="targetPath">The target-language file.</param>
    /// <param name="options">Read options; defaults if null.</param>
    /// <returns>The pairs read; <see cref="SentencePair.LineNumber"/> is the line number in both files.</returns>
    /// <exception cref="FileNotFoundException">A file does not exist.</exception>
    /// <exception cref="CorpusFormatException">
    /// The files have different line counts (always thrown), or a line is empty or not valid UTF-8 and
    /// <see cref="CorpusReadOptions.SkipInvalid"/> is off; the message names the offending file.
    /// </exception>
    public static CorpusReadResult ReadAligned(string sourcePath, string targetPath, CorpusReadOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(sourcePath);
        ArgumentException.ThrowIfNullOrEmpty(targetPath);
        var collector = new Collector(options);
        EnsureFileExists(sourcePath);
        EnsureFileExists(targetPath);
        var pairs = new List<SentencePair>();
        using var sourceReader = new Utf8LineReader(sourcePath);
        using var targetReader = new Utf8LineReader(targetPath);
        while (NextAligned(sourceReader, sourcePath, targetReader, targetPath, collector, out var pair))
            if (pair is not null) pairs.Add(pair);
        return collector.ToResult(pairs);
    }

    /// <summary>
    /// Reads the next line of two aligned files (as <see cref="ReadAligned"/> does): false when both end; otherwise
    /// <paramref name="pair"/> is the lines' pair, or null when they were skipped (or the collector is full: lines are
    /// still counted so that a length mismatch is detected).
    /// </summary>
    private static bool NextAligned(Utf8LineReader sourceReader, string sourcePath, Utf8LineReader targetReader, string targetPath,
        Collector collector, out SentencePair? pair)
    {
        pair = null;
        bool hasSource = sourceReader.TryReadLine(out ReadOnlySpan<byte> sourceBytes);
        bool hasTarget = targetReader.TryReadLine(out ReadOnlySpan<byte> targetBytes);
        if (!hasSource && !hasTarget)
        {
            return false;
        }
        if (hasSource != hasTarget)
        {
            throw LineCountMismatch(sourcePath, sourceReader, targetPath, targetReader, hasSource);
        }
        if (collector.IsFull)
        {
            return true; // keep counting lines so a length mismatch is still detected
        }

        int lineNumber = sourceReader.LineNumber;
        if (!collector.TryDecode(sourcePath, lineNumber, sourceBytes, 0, out ReadOnlySpan<char> source)
            || !collector.TryDecode(targetPath, lineNumber, targetBytes, 1, out ReadOnlySpan<char> target))
        {
            return true;
        }
        if (ControlCharacter(source) is not null || ControlCharacter(target) is not null)
        {
            bool inSource = ControlCharacter(source) is not null;
            int at = ControlCharacter(inSource ? source : target)!.Value;
            char c = (inSource ? source : target)[at];
            collector.Fail(inSource ? sourcePath : targetPath, lineNumber, $"control character U+{(int)c:X4} at column {at + 1}; a sentence holds text only");
            return true;
        }
        pair = collector.PairUnlessEmpty(lineNumber, source.Trim(), (sourcePath, "empty sentence"), target.Trim(), (targetPath, "empty sentence"));
        return true;
    }

    /// <summary>
    /// The pairs of a corpus (a tab-separated file or folder as <see cref="Read"/> takes, or with <paramref name="targetPath"/>
    /// two aligned files as <see cref="ReadAligned"/> takes) read line by line, never held: each enumeration reads the
    /// files again, with the same checks and options, and leaves what it skipped in the stream's counts.
    /// </summary>
    internal static CorpusStream Stream(string path, string? targetPath, CorpusReadOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (targetPath is null && Directory.Exists(path))
        {
            path = new[] { DefaultTsvName, FallbackTsvName }.Select(name => Path.Combine(path, name)).FirstOrDefault(File.Exists)
                ?? throw new FileNotFoundException($"No corpus file in directory {path}: looked for {DefaultTsvName} and {FallbackTsvName}.");
        }
        EnsureFileExists(path);
        if (targetPath is not null) EnsureFileExists(targetPath);
        _ = new Collector(options);   // checks the options now, not at the first enumeration
        return new CorpusStream(path, targetPath, options ?? new CorpusReadOptions());
    }

    /// <summary>A corpus read again at each enumeration (<see cref="Stream"/>).</summary>
    internal sealed class CorpusStream(string path, string? targetPath, CorpusReadOptions options) : IEnumerable<SentencePair>
    {
        /// <summary>The corpus file (the source side of aligned files).</summary>
        public string Path { get; } = path;

        /// <summary>The target-side file of aligned files, else null.</summary>
        public string? TargetPath { get; } = targetPath;

        /// <summary>What the last complete enumeration skipped (with <see cref="CorpusReadOptions.SkipInvalid"/>).</summary>
        public CorpusReadResult Skipped { get; private set; } = new([], 0, []);

        /// <summary>Of <see cref="Skipped"/>: lines skipped because a side (or the line) was empty.</summary>
        public int EmptySides { get; private set; }

        public IEnumerator<SentencePair> GetEnumerator()
        {
            var collector = new Collector(options);
            if (TargetPath is null)
            {
                using var reader = new Utf8LineReader(Path);
                int? columns = null;
                while (!collector.IsFull && NextTsv(reader, Path, collector, ref columns, out var pair))
                    if (pair is not null) yield return pair;
            }
            else
            {
                using var sourceReader = new Utf8LineReader(Path);
                using var targetReader = new Utf8LineReader(TargetPath);
                while (NextAligned(sourceReader, Path, targetReader, TargetPath, collector, out var pair))
                    if (pair is not null) yield return pair;
            }
            Skipped = collector.ToResult([]);
            EmptySides = collector.EmptySides;
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    private static CorpusFormatException LineCountMismatch(
        string sourcePath, Utf8LineReader sourceReader, string targetPath, Utf8LineReader targetReader, bool sourceIsLonger)
    {
        Utf8LineReader longer = sourceIsLonger ? sourceReader : targetReader;
        int firstExtraLine = longer.LineNumber;
        while (longer.TryReadLine(out _))
        {
        }
        int sourceLines = sourceIsLonger ? longer.LineNumber : firstExtraLine - 1;
        int targetLines = sourceIsLonger ? firstExtraLine - 1 : longer.LineNumber;
        return new CorpusFormatException(
            sourceIsLonger ? sourcePath : targetPath,
            firstExtraLine,
            $"aligned files have different line counts: {sourcePath} has {sourceLines} lines "
            + $"but {targetPath} has {targetLines} lines");
    }

    /// <summary>The index of the first C0 control character other than tab, or DEL, in <paramref name="line"/>; null if none.</summary>
    private static int? ControlCharacter(ReadOnlySpan<char> line)
    {
        for (int i = 0; i < line.Length; i++)
            if ((line[i] < ' ' && line[i] != '\t') || line[i] == '\u007F') return i;
        return null;
    }

    private static void EnsureFileExists(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Corpus file not found: {path}", path);
        }
    }

    /// <summary>Accumulates pairs and skip information, and turns line errors into exceptions or skips.</summary>
    private sealed class Collector
    {
        private readonly bool _skipInvalid;
        private readonly int? _maxPairs;
        private int _count;
        private readonly List<string> _reasons = [];
        private readonly char[][] _charBuffers = [new char[256], new char[256]];
        private int _skipped;

        public Collector(CorpusReadOptions? options)
        {
            options ??= new CorpusReadOptions();
            if (options.MaxPairs is < 0)
            {
                throw new ArgumentOutOfRangeException(
                    nameof(options), options.MaxPairs, "MaxPairs must not be negative.");
            }
            _skipInvalid = options.SkipInvalid;
            _maxPairs = options.MaxPairs;
        }

        public bool IsFull => _maxPairs is int max && _count >= max;

        /// <summary>Lines skipped because the line or one of its sides was empty.</summary>
        public int EmptySides { get; private set; }

        /// <summary>The pair of line <paramref name="lineNumber"/> (counted), or null after failing it naming the side (file and reason) that is empty.</summary>
        public SentencePair? PairUnlessEmpty(int lineNumber, ReadOnlySpan<char> source, (string Path, string Reason) sourceEmpty,
            ReadOnlySpan<char> target, (string Path, string Reason) targetEmpty)
        {
            if (source.IsEmpty) Fail(sourceEmpty.Path, lineNumber, sourceEmpty.Reason, empty: true);
            else if (target.IsEmpty) Fail(targetEmpty.Path, lineNumber, targetEmpty.Reason, empty: true);
            else
            {
                _count++;
                return new SentencePair(new string(source), new string(target), lineNumber);
            }
            return null;
        }

        public void Fail(string path, int lineNumber, string reason, bool empty = false)
        {
            if (!_skipInvalid)
            {
                throw new CorpusFormatException(path, lineNumber, reason);
            }
            _skipped++;
            if (empty) EmptySides++;
            if (_reasons.Count < MaxSkipReasons)
            {
                _reasons.Add($"{path}:{lineNumber}: {reason}");
            }
        }

        /// <summary>Strictly decodes UTF-8 into char buffer <paramref name="slot"/>; reports a line error if invalid.</summary>
        public bool TryDecode(string path, int lineNumber, ReadOnlySpan<byte> bytes, int slot, out ReadOnlySpan<char> text)
        {
            char[] buffer = _charBuffers[slot];
            if (buffer.Length < bytes.Length)
            {
                buffer = _charBuffers[slot] = new char[Math.Max(bytes.Length, buffer.Length * 2)];
            }
            OperationStatus status = Utf8.ToUtf16(bytes, buffer, out int bytesRead, out int charsWritten,
                replaceInvalidSequences: false, isFinalBlock: true);
            if (status != OperationStatus.Done)
            {
                Fail(path, lineNumber,
                    $"invalid UTF-8 (byte 0x{bytes[bytesRead]:X2} at byte offset {bytesRead} of the line)");
                text = default;
                return false;
            }
            text = buffer.AsSpan(0, charsWritten);
            return true;
        }

        public CorpusReadResult ToResult(List<SentencePair> pairs) => new(pairs.AsReadOnly(), _skipped, _reasons.AsReadOnly());
    }
}
