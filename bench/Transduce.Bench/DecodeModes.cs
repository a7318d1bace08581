namespace Transduce.Bench;

/// <summary>
/// One way of decoding: greedy or beam search, incremental (the decoder carries its state: key/value cache, GRU hidden
/// state) or recompute-prefix (d2l's way: the whole prefix again at every step), and a batch size. The name,
/// e.g. <c>beam4-recompute-b64</c>, is what the PyTorch twin (bench/pytorch/infer_twin.py) is told to run.
/// </summary>
/// <param name="Beam">Beam size; 1 means greedy search.</param>
/// <param name="Recompute">Recompute the prefix at every step instead of carrying the decoder state.</param>
/// <param name="Batch">Sentences decoded together.</param>
internal sealed record DecodeMode(int Beam, bool Recompute, int Batch)
{
    public string Search => Beam == 1 ? "greedy" : $"beam{Beam}";

    public string Decoding => Recompute ? "recompute" : "incremental";

    public string Name => $"{Search}-{Decoding}-b{Batch}";

    /// <summary>Every combination the issue asks for: greedy and beam, batch 1 and the large batch, incremental and recompute.</summary>
    public static IReadOnlyList<DecodeMode> All(int beam, int batch) =>
        (from b in new[] { 1, beam }
         from size in new[] { 1, batch }
         from recompute in new[] { false, true }
         select new DecodeMode(b, recompute, size)).ToList();
}

/// <summary>What one decoding mode measured: wall time of the timed pass, the phase's peak RSS and the outputs.</summary>
/// <param name="Mode">The mode.</param>
/// <param name="Seconds">Wall time of the timed pass (after a warm-up pass), tokenisation excluded.</param>
/// <param name="PeakRss">Peak resident set size during the timed pass, in bytes (the process's, reset before the pass).</param>
/// <param name="Rows">The test sentences decoded (indices into the test file), in input order.</param>
/// <param name="Outputs">Output ids per decoded sentence, in the order of <paramref name="Rows"/>, without &lt;bos&gt;/&lt;eos&gt;.</param>
internal sealed record ModeResult(DecodeMode Mode, double Seconds, long PeakRss, int[] Rows, int[][] Outputs)
{
    public int Sentences => Outputs.Length;

    /// <summary>CPU time of the whole process over the timed pass (every thread), when the side measured it.</summary>
    public double? CpuSeconds { get; init; }

    /// <summary>Emitted target tokens: every output token plus its &lt;eos&gt; — one decoder step each in greedy search.</summary>
    public long Tokens => Outputs.Sum(o => (long)o.Length + 1);
}
