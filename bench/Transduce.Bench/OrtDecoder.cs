using Microsoft.ML.OnnxRuntime;
using Transduce.Inference;

namespace Transduce.Bench;

/// <summary>
/// Greedy and beam search over the exported graphs (<see cref="OrtModel"/>), following our <see cref="GreedySearch"/> and
/// <see cref="BeamSearch"/> (and bench/pytorch/infer_twin.py, which mirrors them) rule for rule, so that the tokens can be
/// compared: &lt;bos&gt; first; greedy takes each row's first maximal logit, ends a row at &lt;eos&gt; or its maximum length
/// and drops finished rows once an eighth of the batch is done; beam search keeps k hypotheses per sentence as consecutive
/// rows, scores the continuations by float64 log-softmax, visits the best 2k of k × V in order (ties: lower beam, then lower
/// token), finishes an &lt;eos&gt; among the first k, forces &lt;eos&gt; at the maximum length and stops a sentence by
/// <see cref="BeamSearchOptions"/>' rule (length penalty, n-best bound, Hugging Face's early stopping); done sentences leave
/// the batch. Banned tokens get −∞ (greedy: in the logits; beam: after the log-softmax); a fixed length bans &lt;eos&gt; in the
/// logits for the first N steps, as <see cref="FixedLength"/> does.
/// </summary>
/// <remarks>
/// Every tensor lives in <see cref="NativeBuffer{T}"/>s allocated once per mode and bound with one <see cref="OrtIoBinding"/>:
/// each step reads the cache from one buffer per layer and writes the grown cache (the graph's <c>present_*</c>) into its
/// twin, which becomes the next step's input (no copy); reordering beams or dropping rows gathers rows from one into the other.
/// Cross-attention keys and values are gathered only when the set of sentences changes (beams of one sentence share them).
/// </remarks>
internal sealed unsafe class OrtDecoder : IDisposable
{
    private readonly OrtModel model;
    private readonly SearchRules rules;
    private readonly OrtIoBinding binding;
    private readonly RunOptions runOptions = new();
    private readonly NativeBuffer<long> source, tokens, lengths;
    private readonly NativeBuffer<float> logits;
    private readonly NativeBuffer<float>[] past, present, cross, crossSpare;
    private readonly string[] pastNames, presentNames, crossNames;
    private readonly long maxSteps;

    /// <summary>What the searches need besides the graphs.</summary>
    /// <param name="Pad">Target (and source) padding id.</param>
    /// <param name="Bos">Target start token.</param>
    /// <param name="Eos">Target end token.</param>
    /// <param name="Banned">Banned target ids.</param>
    /// <param name="FixedLength">When set, &lt;eos&gt; gets logit −∞ for the first N steps.</param>
    /// <param name="Beam">Beam options (beam size, length penalty, stopping rule); the beam size is the mode's.</param>
    internal sealed record SearchRules(int Pad, int Bos, int Eos, int[] Banned, int? FixedLength, BeamSearchOptions Beam);

    /// <summary>Buffers for batches of up to <paramref name="maxSentences"/> × <paramref name="beam"/> rows, sources of up to
    /// <paramref name="maxSourceSteps"/> positions and outputs of up to <paramref name="maxOutput"/> tokens.</summary>
    public OrtDecoder(OrtModel model, SearchRules rules, int maxSentences, int beam, int maxSourceSteps, int maxOutput)
    {
        this.model = model;
        this.rules = rules;
        long rows = (long)maxSentences * beam;
        maxSteps = maxOutput + 1;
        long layerCache = rows * model.Heads * maxSteps * model.HeadSize;
        long layerCross = rows * model.Heads * maxSourceSteps * model.HeadSize;
        source = new NativeBuffer<long>((long)maxSentences * maxSourceSteps);
        tokens = new NativeBuffer<long>(rows);
        lengths = new NativeBuffer<long>(rows);
        logits = new NativeBuffer<float>(rows * model.Vocabulary);
        int n = 2 * model.Layers;
        past = Enumerable.Range(0, n).Select(_ => new NativeBuffer<float>(layerCache)).ToArray();
        present = Enumerable.Range(0, n).Select(_ => new NativeBuffer<float>(layerCache)).ToArray();
        cross = Enumerable.Range(0, n).Select(_ => new NativeBuffer<float>(layerCross)).ToArray();
        crossSpare = Enumerable.Range(0, n).Select(_ => new NativeBuffer<float>(layerCross)).ToArray();
        string[] cache = Enumerable.Range(0, model.Layers).SelectMany(i => new[] { $"key_{i}", $"value_{i}" }).ToArray();
        pastNames = cache.Select(c => "past_" + c).ToArray();
        presentNames = cache.Select(c => "present_" + c).ToArray();
        crossNames = cache.Select(c => "cross_" + c).ToArray();
        binding = model.Decoder.CreateIoBinding();
    }

    /// <summary>Decoder runs so far (for <see cref="OrtProfile"/>, which skips those before the timed pass).</summary>
    public int Runs { get; private set; }

    /// <summary>Rows over all decoder runs so far: the tokens decoded, counting those of rows already finished.</summary>
    public long RowsRun { get; private set; }

    /// <summary>Source steps of the current batch (the cross-attention keys' length).</summary>
    private long sourceSteps;

    /// <summary>
    /// Runs the encoder over <paramref name="sources"/> (framed: ids then &lt;eos&gt;, cut) into the cross-attention buffers:
    /// each sentence's keys and values repeated on <paramref name="repeat"/> consecutive rows.
    /// </summary>
    private void Encode(IReadOnlyList<int[]> sources, int repeat)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            EncodeUntimed(sources, repeat);
        }
        finally
        {
            EncodeSeconds += System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
    }

    /// <summary>Seconds spent so far in <see cref="Encode"/> (the encoder graph and repeating its rows for beams).</summary>
    public double EncodeSeconds { get; private set; }

    private void EncodeUntimed(IReadOnlyList<int[]> sources, int repeat)
    {
        int batch = sources.Count;
        sourceSteps = Math.Max(1, sources.Max(s => s.Length));
        var ids = source.Span(batch * sourceSteps);
        ids.Fill(rules.Pad);
        for (int i = 0; i < batch; i++)
            for (int j = 0; j < sources[i].Length; j++) ids[(int)(i * sourceSteps) + j] = sources[i][j];
        for (int i = 0; i < batch; i++) lengths.Pointer[i] = Math.Max(1, sources[i].Length);
        var target = repeat == 1 ? cross : crossSpare;
        var values = new List<OrtValue>();
        try
        {
            using var encoderBinding = model.Encoder.CreateIoBinding();
            values.Add(source.View(batch, sourceSteps));
            encoderBinding.BindInput("source", values[^1]);
            values.Add(lengths.View(batch));
            encoderBinding.BindInput("valid_lengths", values[^1]);
            for (int c = 0; c < crossNames.Length; c++)
            {
                values.Add(target[c].View(batch, model.Heads, sourceSteps, model.HeadSize));
                encoderBinding.BindOutput(crossNames[c], values[^1]);
            }
            model.Encoder.RunWithBinding(runOptions, encoderBinding);
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
        if (repeat > 1)
        {
            var rows = Enumerable.Range(0, batch * repeat).Select(r => r / repeat).ToArray();
            for (int c = 0; c < cross.Length; c++) crossSpare[c].GatherInto(cross[c], rows, CrossRow);
            var repeated = rows.Select(r => lengths.Pointer[r]).ToArray();
            repeated.CopyTo(lengths.Span(repeated.Length));
        }
    }

    private long CrossRow => model.Heads * sourceSteps * model.HeadSize;

    private long CacheRow(long positions) => model.Heads * positions * model.HeadSize;

    /// <summary>One decoder step over <paramref name="rows"/> rows with <paramref name="step"/> cached positions: the tokens
    /// buffer in, the logits buffer out, the grown cache swapped into <see cref="past"/>.</summary>
    private void Step(int rows, int step)
    {
        if (step + 1 > maxSteps) throw new InvalidOperationException($"step {step} beyond the cache's {maxSteps} positions");
        var values = new List<OrtValue>(4 + 6 * model.Layers);
        try
        {
            binding.ClearBoundInputs();
            binding.ClearBoundOutputs();
            void Input(string name, OrtValue value) { values.Add(value); binding.BindInput(name, value); }
            void Output(string name, OrtValue value) { values.Add(value); binding.BindOutput(name, value); }
            Input("tokens", tokens.View(rows, 1));
            Input("valid_lengths", lengths.View(rows));
            for (int c = 0; c < pastNames.Length; c++)
            {
                Input(pastNames[c], past[c].View(rows, model.Heads, step, model.HeadSize));
                Input(crossNames[c], cross[c].View(rows, model.Heads, sourceSteps, model.HeadSize));
                Output(presentNames[c], present[c].View(rows, model.Heads, step + 1, model.HeadSize));
            }
            Output("logits", logits.View(rows, model.Vocabulary));
            model.Decoder.RunWithBinding(runOptions, binding);
            Runs++;
            RowsRun += rows;
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
        for (int c = 0; c < past.Length; c++) (past[c], present[c]) = (present[c], past[c]);
    }

    /// <summary>Keeps decoder rows <paramref name="rows"/> (in that order): the cache of <paramref name="positions"/> positions,
    /// valid lengths, and, when <paramref name="crossToo"/>, the cross-attention keys and values.</summary>
    private void SelectRows(int[] rows, int positions, bool crossToo)
    {
        for (int c = 0; c < past.Length; c++)
        {
            past[c].GatherInto(present[c], rows, CacheRow(positions));
            (past[c], present[c]) = (present[c], past[c]);
            if (crossToo)
            {
                cross[c].GatherInto(crossSpare[c], rows, CrossRow);
                (cross[c], crossSpare[c]) = (crossSpare[c], cross[c]);
            }
        }
        var kept = rows.Select(r => lengths.Pointer[r]).ToArray();
        kept.CopyTo(lengths.Span(kept.Length));
    }

    /// <summary>Greedy search over one batch (sources framed), as <see cref="GreedySearch"/>.</summary>
    public int[][] Greedy(IReadOnlyList<int[]> sources, int[] maxLengths)
    {
        int batch = sources.Count;
        Encode(sources, 1);
        var outputs = Enumerable.Range(0, batch).Select(_ => new List<int>()).ToArray();
        var rowSentences = Enumerable.Range(0, batch).ToArray();
        for (int r = 0; r < batch; r++) tokens.Pointer[r] = rules.Bos;
        int limit = maxLengths.Max();
        int vocab = model.Vocabulary;
        for (int step = 0; step <= limit; step++)
        {
            int rows = rowSentences.Length;
            Step(rows, step);
            int done = 0;
            for (int r = 0; r < rows; r++)
            {
                var row = new Span<float>(logits.Pointer + (long)r * vocab, vocab);
                Ban(row, step, greedy: true);
                int token = ArgMax(row);
                tokens.Pointer[r] = token;
                int s = rowSentences[r];
                if (s >= 0)
                {
                    if (token == rules.Eos || outputs[s].Count >= maxLengths[s]) rowSentences[r] = -1;
                    else outputs[s].Add(token);
                }
                if (rowSentences[r] < 0) done++;
            }
            if (done == rows) break;
            if (done * 8 >= rows)
            {
                var keep = Enumerable.Range(0, rows).Where(r => rowSentences[r] >= 0).ToArray();
                SelectRows(keep, step + 1, crossToo: true);
                var next = keep.Select(r => tokens.Pointer[r]).ToArray();
                next.CopyTo(tokens.Span(next.Length));
                rowSentences = keep.Select(r => rowSentences[r]).ToArray();
            }
        }
        return outputs.Select(o => o.ToArray()).ToArray();
    }

    /// <summary>The first maximal value's index (argmax's choice).</summary>
    private static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++)
            if (row[i] > row[best]) best = i;
        return best;
    }

    /// <summary>For a fixed length, &lt;eos&gt; before step N gets logit −∞; in greedy search banned tokens too (beam search
    /// bans them after the log-softmax).</summary>
    private void Ban(Span<float> row, int step, bool greedy)
    {
        if (rules.FixedLength is int n && step < n) row[rules.Eos] = float.NegativeInfinity;
        if (greedy)
            foreach (int b in rules.Banned) row[b] = float.NegativeInfinity;
    }

    /// <summary>Beam search over one batch (sources framed), as <see cref="BeamSearch"/>; the best hypothesis per sentence.</summary>
    public int[][] Beam(IReadOnlyList<int[]> sources, int[] maxLengths, int k)
    {
        var options = rules.Beam with { BeamSize = k };
        bool huggingFace = options.Normalization == LengthNormalization.HuggingFace;
        int batch = sources.Count, vocab = model.Vocabulary;
        var beams = new int[batch][][];
        var scores = new double[batch][];
        var finished = new List<(int[] Tokens, double Score, double LogProbability)>[batch];
        for (int s = 0; s < batch; s++)
        {
            beams[s] = Enumerable.Repeat(Array.Empty<int>(), k).ToArray();
            scores[s] = Enumerable.Repeat(double.NegativeInfinity, k).ToArray();
            scores[s][0] = 0; // the k copies of <bos> are one hypothesis
            finished[s] = [];
        }
        var active = Enumerable.Range(0, batch).ToList();
        Encode(sources, k);
        int width = (int)Math.Min(2L * k, (long)k * vocab);
        var logProbs = new double[vocab];
        var bestValues = new double[width];
        var bestIndices = new long[width];
        for (int step = 0; active.Count > 0; step++)
        {
            int n = active.Count;
            for (int p = 0; p < n; p++)
                for (int j = 0; j < k; j++)
                {
                    var t = beams[active[p]][j];
                    tokens.Pointer[p * k + j] = step == 0 ? rules.Bos : t.Length > 0 ? t[^1] : rules.Pad;
                }
            Step(n * k, step);
            var nextActive = new List<int>(n);
            var parents = new List<int>(n * k);
            for (int p = 0; p < n; p++)
            {
                int s = active[p];
                bool forced = step >= maxLengths[s];
                int found = 0;
                for (int j = 0; j < k; j++)
                {
                    double score = scores[s][j];
                    if (double.IsNegativeInfinity(score)) continue; // an empty slot: every continuation is −∞
                    var row = new Span<float>(logits.Pointer + (long)(p * k + j) * vocab, vocab);
                    Ban(row, step, greedy: false);
                    LogSoftmax(row, logProbs);
                    foreach (int b in rules.Banned) logProbs[b] = double.NegativeInfinity;
                    if (forced)
                    {
                        double eos = huggingFace ? 0 : logProbs[rules.Eos];
                        Array.Fill(logProbs, double.NegativeInfinity);
                        logProbs[rules.Eos] = eos;
                    }
                    for (int v = 0; v < vocab; v++)
                    {
                        double value = score + logProbs[v];
                        if (double.IsNegativeInfinity(value) || (found == width && value <= bestValues[width - 1])) continue;
                        // Insert after every equal value: those came first (lower beam, then lower token).
                        int at = Math.Min(found, width - 1);
                        while (at > 0 && bestValues[at - 1] < value)
                        {
                            if (at < width) { bestValues[at] = bestValues[at - 1]; bestIndices[at] = bestIndices[at - 1]; }
                            at--;
                        }
                        bestValues[at] = value;
                        bestIndices[at] = (long)j * vocab + v;
                        if (found < width) found++;
                    }
                }

                var newBeams = Enumerable.Repeat(Array.Empty<int>(), k).ToArray();
                var newScores = Enumerable.Repeat(double.NegativeInfinity, k).ToArray();
                var newParents = Enumerable.Repeat(p * k, k).ToArray();
                int alive = 0;
                for (int c = 0; c < found && alive < k; c++)
                {
                    double value = bestValues[c];
                    int beam = (int)(bestIndices[c] / vocab), token = (int)(bestIndices[c] % vocab);
                    var prefix = beams[s][beam];
                    if (token == rules.Eos)
                    {
                        if (c < k) finished[s].Add((prefix, options.Score(value, prefix.Length + 1), value));
                        continue;
                    }
                    newBeams[alive] = [.. prefix, token];
                    newScores[alive] = value;
                    newParents[alive] = p * k + beam;
                    alive++;
                }
                beams[s] = newBeams;
                scores[s] = newScores;
                if (alive > 0 && !IsDone(options, finished[s], newScores[0], maxLengths[s], step + 1))
                {
                    nextActive.Add(s);
                    parents.AddRange(newParents);
                }
            }
            if (nextActive.Count > 0)
            {
                SelectRows(parents.ToArray(), step + 1, crossToo: nextActive.Count != n);
            }
            active = nextActive;
        }
        return finished.Select(f => f.OrderByDescending(h => h.Score).ThenByDescending(h => h.LogProbability)
            .Select(h => h.Tokens).FirstOrDefault() ?? []).ToArray();
    }

    /// <summary>log-softmax in float64 (as <see cref="BeamScores"/>): x − (max + log Σ exp(x − max)).</summary>
    private static void LogSoftmax(ReadOnlySpan<float> row, double[] result)
    {
        double max = double.NegativeInfinity;
        foreach (float x in row) max = Math.Max(max, x);
        double sum = 0;
        foreach (float x in row) sum += Math.Exp(x - max);
        double normaliser = max + Math.Log(sum);
        for (int i = 0; i < row.Length; i++) result[i] = row[i] - normaliser;
    }

    /// <summary>BeamSearch's stopping rule (its <c>IsDone</c>), on the finished hypotheses' scores.</summary>
    private static bool IsDone(BeamSearchOptions options, List<(int[] Tokens, double Score, double LogProbability)> done,
        double bestAlive, int maxLength, int runningLength)
    {
        if (options.Normalization == LengthNormalization.HuggingFace)
        {
            if (done.Count < options.BeamSize) return false;
            if (options.EarlyStopping == EarlyStopping.WhenFull) return true;
            int length = options.EarlyStopping == EarlyStopping.Never && options.LengthPenalty > 0 ? maxLength + 1 : runningLength;
            double worst = done.Select(h => h.Score).OrderByDescending(x => x).ElementAt(options.BeamSize - 1);
            return bestAlive / options.Penalty(length) <= worst;
        }
        if (options.NormalizesLength && done.Count >= options.BeamSize) return true;
        if (done.Count < options.NBest) return false;
        double nth = done.Select(h => h.Score).OrderByDescending(x => x).ElementAt(options.NBest - 1);
        double bound = options.NormalizesLength ? bestAlive / options.Penalty(maxLength + 1) : bestAlive;
        return nth >= bound;
    }

    public void Dispose()
    {
        binding.Dispose();
        runOptions.Dispose();
        foreach (var b in past.Concat(present).Concat(cross).Concat(crossSpare)) b.Dispose();
        source.Dispose();
        tokens.Dispose();
        lengths.Dispose();
        logits.Dispose();
    }
}
