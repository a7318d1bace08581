using System.Text.Json;
using Transduce.Import.T5;
using Transduce.Inference;
using Transduce.Models.Transformer;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Tests.Import.T5;

/// <summary>
/// Parity with transformers' T5 on two tiny random folders written by <c>python/reference/t5_reference.py</c> (an
/// independent PyTorch re-implementation of <c>modeling_t5.py</c> and <c>generate</c>): <c>t5-tiny</c> (relu, tied output
/// rescaled by d^−½; read from safetensors and from <c>pytorch_model.bin</c>) and <c>flan-t5-tiny</c> (gated-gelu, untied
/// <c>lm_head</c>, 2 heads × d_kv 12 inside a 16-wide model, 3 decoder blocks).
/// </summary>
public sealed class T5ParityTests
{
    internal static string Folder(string name) => Path.Combine(TestPaths.RepoRoot, "tests", "Transduce.Tests", "Import", "T5", "testdata", name);

    internal static JsonElement Expected(string name) => JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder(name), "expected.json"))).RootElement;

    internal static long[][] Ints(JsonElement e) => e.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt64()).ToArray()).ToArray();

    private static float[][] Floats(JsonElement e) => e.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToArray();

    private static Tensor Matrix(long[][] rows) => tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, rows[0].Length]);

    private static Tensor Matrix(float[][] rows) => tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, rows[0].Length]);

    /// <summary>A copy of a folder without <c>model.safetensors</c>, so that <c>pytorch_model.bin</c> is read.</summary>
    private static string WithWeights(string name, string weights, TempDir temp)
    {
        if (weights == "model.safetensors") return Folder(name);
        foreach (var file in Directory.GetFiles(Folder(name)).Where(f => Path.GetFileName(f) != "model.safetensors"))
            File.Copy(file, Path.Combine(temp.Path, Path.GetFileName(file)));
        return temp.Path;
    }

    public static TheoryData<string, string> Cases => new()
    {
        { "t5-tiny", "model.safetensors" }, { "t5-tiny", "pytorch_model.bin" }, { "flan-t5-tiny", "model.safetensors" },
    };

    [Fact]
    public void ConfigMapsOntoTheSpec()
    {
        var t5 = T5Import.ReadModelConfig(Path.Combine(Folder("t5-tiny"), "config.json")).ToSpec();
        Assert.Equal((16, 2, 12, 24, 2, 2), (t5.Hidden, t5.Heads, t5.HeadSize, t5.AttentionWidth, t5.EncoderLayers, t5.DecoderLayers));
        Assert.True(t5.TieOutput && t5.ShareEmbeddings && t5.PreNorm && t5.FinalEncoderNorm && t5.FinalDecoderNorm && !t5.ScaleAttention);
        Assert.Equal(("RmsNorm", 1e-6, Math.Pow(16, -0.5), "relu"), (t5.Norm.ToString(), t5.NormEpsilon, t5.OutputScale, t5.FeedForward.Name()));
        Assert.Equal((8, 20), (t5.RelativeBuckets, t5.RelativeMaxDistance));
        var flan = T5Import.ReadModelConfig(Path.Combine(Folder("flan-t5-tiny"), "config.json")).ToSpec();
        Assert.Equal(("gated_gelu_tanh", false, 1.0, 3), (flan.FeedForward.Name(), flan.TieOutput, flan.OutputScale, flan.DecoderLayers));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EncoderLogitsAndGreedyMatchTheReference(string name, string weights)
    {
        using var temp = new TempDir();
        var expected = Expected(name);
        var (model, _) = T5Import.LoadModel(WithWeights(name, weights, temp));
        using (model)
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            var ids = Matrix(Ints(expected.GetProperty("input_ids")));
            var mask = Matrix(Ints(expected.GetProperty("attention_mask")));
            var lengths = mask.sum(1);
            // Encoder output of sentence 0 (its real positions).
            var reference = Matrix(Floats(expected.GetProperty("encoder_output_0")));
            var encoded = model.Encoder.call(ids, lengths).Outputs[0].narrow(0, 0, reference.shape[0]);
            double diff = (encoded - reference).abs().max().item<float>();
            Assert.True(diff <= 1e-4, $"encoder: max |difference| {diff}");
            // First-step logits of every sentence (decoder start = pad = 0).
            var firstReference = Matrix(Floats(expected.GetProperty("first_step_logits")));
            var first = model.call(ids, lengths, zeros(ids.shape[0], 1, ScalarType.Int64)).select(1, 0).narrow(0, 0, firstReference.shape[0]);
            diff = (first - firstReference).abs().max().item<float>();
            Assert.True(diff <= 1e-4, $"first-step logits: max |difference| {diff}");
            // Teacher-forced logits along sentence 0's greedy output.
            var greedy = Ints(expected.GetProperty("greedy_ids"));
            var forced = tensor(new long[] { 0 }.Concat(greedy[0]).ToArray()).unsqueeze(0);
            var forcedReference = Matrix(Floats(expected.GetProperty("forced_logits_0")));
            var forcedLogits = model.call(ids.narrow(0, 0, 1), lengths.narrow(0, 0, 1), forced)[0].narrow(0, 0, forcedReference.shape[0]);
            diff = (forcedLogits - forcedReference).abs().max().item<float>();
            Assert.True(diff <= 1e-4, $"teacher-forced logits: max |difference| {diff}");
            // Greedy search, stepped with the cache, token for token: as generate without forced_eos_token_id, up to
            // max_new_tokens tokens, </s> included when it comes, none forced at the limit.
            int maxNew = expected.GetProperty("max_new_tokens").GetInt32();
            model.eval();
            var stop = new SearchOptions { LengthLimit = LengthLimitRule.Stop };
            var ours = GreedySearch.Decode(model, ids, lengths, new SpecialIds(0, 0, 1), Enumerable.Repeat(maxNew, (int)ids.shape[0]).ToArray(), stop);
            int atLimit = 0;
            for (int r = 0; r < greedy.Length; r++)
            {
                var theirs = greedy[r].Select(x => (int)x).TakeWhile(t => t != 1).ToArray();
                Assert.Equal(theirs, ours[r].Tokens);
                if (!greedy[r].Contains(1)) atLimit++;
            }
            Assert.True(atLimit >= 2, $"only {atLimit} greedy outputs reach the limit without </s>");
        }
    }
}
