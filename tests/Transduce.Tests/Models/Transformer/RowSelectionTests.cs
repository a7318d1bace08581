using Transduce.Models;
using Transduce.Models.Transformer;
using static TorchSharp.torch;

namespace Transduce.Tests.Models.Transformer;

/// <summary>
/// Beam search reorders, repeats and drops rows every step. On the managed attention path the decoder does not copy its
/// keys and values for that: the state records which stored row each row reads (TransformerState.MemoryRows,
/// PositionRows). Every row must still see exactly its own hypothesis — its source and its tokens — through reorders,
/// the cache growing, dropped sentences, and the hand-over to other paths.
/// </summary>
public sealed class RowSelectionTests
{
    private static TransformerSeq2Seq Model(ComputeType type)
    {
        manual_seed(23);
        var config = new TransformerConfig
        {
            SourceVocabSize = 40, TargetVocabSize = 50, EmbeddingSize = 32, HiddenSize = 32, Layers = 2, Heads = 4, FfnSize = 64,
            Dropout = 0, PreNorm = true,
        };
        var model = new TransformerSeq2Seq(config);
        model.eval();
        ComputeTypes.Apply(model, type);
        return model;
    }

    // Each step: for every next row, the row it continues. Repeats, swaps, sentence blocks dropped, then down to one row.
    private static readonly int[][] Selections =
    [
        [0, 0, 1, 1, 2, 2], [1, 0, 3, 3, 5, 4], [0, 0, 2, 3, 4, 4], [1, 1, 0, 2, 5, 3], [0, 1, 2, 3, 4, 5],
        [2, 3, 4, 5], [1, 0, 3, 2], [0, 0, 3, 3], [1, 2, 3, 0], [2, 2, 3, 3], [1, 0, 0, 1], [3, 2, 1, 0], [0, 1, 2, 3],
        [1, 1, 2, 2], [0, 3, 1, 2], [2, 1, 3, 0], [0, 0, 1, 1], [3, 2, 1, 0], [1], [0], [0],
    ];

    /// <summary>Decodes with <see cref="Selections"/>; returns every step's logits with each row's source row and tokens so far.</summary>
    private static List<(int Source, long[] Tokens, Tensor Logits)> Decode(TransformerSeq2Seq model, Tensor source, Tensor lengths, bool dense)
    {
        var records = new List<(int, long[], Tensor)>();
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        int[] sources = [0, 1, 2];
        var tokens = new List<long[]> { Array.Empty<long>(), Array.Empty<long>(), Array.Empty<long>() };
        for (int step = 0; step < Selections.Length; step++)
        {
            var picked = Selections[step];
            state = model.Decoder.SelectRows(state, tensor(picked.Select(r => (long)r).ToArray()));
            if (dense) state = state.Dense();
            sources = picked.Select(r => sources[r]).ToArray();
            tokens = picked.Select(r => tokens[r]).ToList();
            var next = tokens.Select((t, row) => (long)(3 + (step * 7 + row * 5 + t.Length) % 45)).ToArray();
            tokens = tokens.Select((t, row) => t.Append(next[row]).ToArray()).ToList();
            (var logits, state) = model.Decoder.call(tensor(next).reshape(-1, 1), state);
            for (int row = 0; row < next.Length; row++) records.Add((sources[row], tokens[row], logits[row, 0].clone()));
        }
        return records;
    }

    [Fact]
    public void ReorderedRowsSeeTheirOwnHypothesis()
    {
        using var model = Model(ComputeType.Float32);
        manual_seed(4);
        var source = randint(4, 40, [3, 7]);
        var lengths = tensor(new long[] { 7, 5, 3 });
        List<(int Source, long[] Tokens, Tensor Logits)> records;
        using (inference_mode()) records = Decode(model, source, lengths, dense: false);
        // The oracle: the modules, teacher-forced on each row's own source and tokens (21 steps: the cache grows past 16).
        model.train();
        foreach (var (row, tokens, logits) in records)
        {
            var target = tensor(tokens).reshape(1, -1);
            using var expected = model.call(source[row].unsqueeze(0), lengths[row].unsqueeze(0), target)[0, -1];
            Assert.True(expected.allclose(logits, rtol: 1e-4, atol: 1e-5),
                $"step {tokens.Length}, source {row}: max difference {(expected - logits).abs().max().item<float>()}");
        }
    }

    [Theory]
    [InlineData(ComputeType.Float32)]
    [InlineData(ComputeType.BFloat16)]
    public void ReadingThroughTheMapsEqualsCopyingTheRows(ComputeType type)
    {
        // The same kernels over the same stored numbers: the maps and the copies must agree exactly (a bfloat16 cache included).
        using var model = Model(type);
        manual_seed(5);
        var source = randint(4, 40, [3, 7]);
        var lengths = tensor(new long[] { 6, 7, 2 });
        using var grad = inference_mode();
        var lazy = Decode(model, source, lengths, dense: false);
        var copied = Decode(model, source, lengths, dense: true);
        Assert.Equal(copied.Count, lazy.Count);
        for (int i = 0; i < lazy.Count; i++)
        {
            Assert.Equal(copied[i].Tokens, lazy[i].Tokens);
            Assert.True(copied[i].Logits.eq(lazy[i].Logits).all().item<bool>(), $"record {i} (step {lazy[i].Tokens.Length}) differs");
        }
    }

    [Fact]
    public void SelectingRowsCopiesNothing()
    {
        using var model = Model(ComputeType.Float32);
        manual_seed(6);
        var source = randint(4, 40, [2, 5]);
        var lengths = tensor(new long[] { 5, 4 });
        using var grad = inference_mode();
        var state = model.Decoder.InitState(model.Encoder.call(source, lengths), lengths);
        state = model.Decoder.SelectRows(state, tensor(new long[] { 0, 0, 1, 1 }));
        (_, state) = model.Decoder.call(tensor(new long[] { 1, 1, 1, 1 }).reshape(-1, 1), state);
        var selected = model.Decoder.SelectRows(state, tensor(new long[] { 1, 0, 3, 3 }));
        Assert.Same(state.Cache, selected.Cache);
        Assert.Same(state.CrossKeys[0], selected.CrossKeys[0]);
        Assert.Equal([0, 0, 1, 1], selected.MemoryRows!);
        Assert.Equal([1, 0, 3, 3], selected.PositionRows!);
        Assert.Equal(4, selected.Rows);
    }
}
