using System.Diagnostics;
using Transduce.Translation;
using Transduce.Architecture;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Inference;
using static TorchSharp.torch;
using Transduce.Text;

namespace Transduce.Bench;

/// <summary>
/// Decodes tokenised test sentences with a checkpoint's model as <see cref="Translator"/> does (length-sorted batches,
/// the same source cut and output limits, outputs back in input order), but on the model directly, so that the
/// recompute-prefix view (<see cref="RecomputePrefix"/>) can be measured too, and times each mode.
/// </summary>
internal sealed class TransduceDecoder
{
    private readonly Checkpoint checkpoint;
    private readonly SpecialIds sourceIds, targetIds;
    private readonly int? maxSourceSteps;

    /// <summary>Tokenises <paramref name="sentences"/> with the checkpoint's text pipeline and source vocabulary.</summary>
    public TransduceDecoder(Checkpoint checkpoint, IReadOnlyList<string> sentences)
    {
        this.checkpoint = checkpoint;
        var pipeline = checkpoint.CreateTextPipeline();
        var src = checkpoint.SourceVocabulary;
        var tgt = checkpoint.TargetVocabulary;
        sourceIds = new SpecialIds(src.PadId, src.BosId, src.EosId);
        targetIds = new SpecialIds(tgt.PadId, tgt.BosId, tgt.EosId);
        maxSourceSteps = Batching.MinLimit(checkpoint.TextConfig.MaxSteps, checkpoint.ModelConfig.MaxSequenceLength);
        Sources = sentences.Select(pipeline.EncodeSource).ToArray();
        Transduce.Native.NativeMemory.KeepFreedMemory(); // as translate/evaluate/serve do (a Translator did so itself when these figures were taken)
        using var translator = new Translator(checkpoint, ownsCheckpoint: false);
        MaxLengths = Sources.Select(source => translator.MaxOutputLength(source.Length)).ToArray();
    }

    /// <summary>Source ids per sentence, without &lt;eos&gt; (what the PyTorch twin is given).</summary>
    public int[][] Sources { get; }

    /// <summary>Output limit per sentence (tokens before &lt;eos&gt;), as Translator computes it.</summary>
    public int[] MaxLengths { get; }

    /// <summary>How the ONNX Runtime twin frames these sources and which of the checkpoint's decoding rules it follows.</summary>
    public OrtTwin.Framing OrtFraming(int beam) => new(sourceIds.Pad, sourceIds.Eos, maxSourceSteps,
        OrtTwin.Rules(targetIds, checkpoint.Generation.Greedy(), checkpoint.Generation.Beam(beam), fixedLength: null));

    /// <summary>Source positions the encoder sees for sentence <paramref name="i"/>: its ids, &lt;eos&gt;, the cut.</summary>
    public int SourceSteps(int i) => Batching.WithEos(Sources[i], sourceIds.Eos, maxSourceSteps).Length;

    /// <summary>
    /// Decodes the sentences <paramref name="rows"/> in <paramref name="mode"/>: one untimed warm-up pass over the
    /// first <paramref name="warmup"/> of them, then the timed pass, with the peak RSS reset in between.
    /// </summary>
    public ModeResult Run(DecodeMode mode, int[] rows, int warmup)
    {
        var model = mode.Recompute ? RecomputePrefix.Of(checkpoint.Model) : checkpoint.Model;
        model.eval();
        Decode(model, mode, rows[..Math.Clamp(warmup, 1, rows.Length)]);
        var (outputs, seconds, cpuSeconds, peakRss) = Hardware.TimedPass(() => Decode(model, mode, rows));
        return new ModeResult(mode, seconds, peakRss, rows, outputs) { CpuSeconds = cpuSeconds };
    }

    private int[][] Decode(EncoderDecoder model, DecodeMode mode, int[] rows)
    {
        var beam = checkpoint.Generation.Beam(mode.Beam);
        var results = new int[rows.Length][];
        // Positions in rows, sorted by source length (a stable sort, as Translator's) so that each batch pads little.
        var order = Enumerable.Range(0, rows.Length).OrderBy(j => Sources[rows[j]].Length).ToArray();
        using var grad = no_grad();
        foreach (var chunk in order.Chunk(mode.Batch))
        {
            using var scope = NewDisposeScope();
            var (source, lengths) = Batching.BuildSources(chunk.Select(j => Sources[rows[j]]).ToList(), sourceIds, maxSourceSteps);
            var limits = chunk.Select(j => MaxLengths[rows[j]]).ToArray();
            var outputs = mode.Beam == 1
                ? GreedySearch.Decode(model, source, lengths, targetIds, limits, checkpoint.Generation.BannedTokens)
                : BeamSearch.Decode(model, source, lengths, targetIds, limits, beam).Select(n => n.Count > 0 ? n[0].Tokens : []).ToArray();
            for (int k = 0; k < chunk.Length; k++) results[chunk[k]] = outputs[k];
        }
        return results;
    }
}
