using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Import.HuggingFace;
using Transduce.Import.M2M100;
using Transduce.Import.T5;
using Transduce.Inference;
using Transduce.Models;
using Transduce.Models.Transformer;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Tests.Distributed;

/// <summary>
/// The PyTorch twin (python/transduce_torch/model.py) builds every Transformer spec choice our importers use, under our
/// parameter names: a tiny checkpoint of each shape, random weights, loads into the twin with strict names, and the twin's
/// teacher-forced logits agree with .NET's (1e-4, float32) and its greedy tokens are .NET's, token for token. The shapes
/// come from the importers' own config readers (NLLB / M2M100, T5, Flan-T5), plus the remaining choices on our own config.
/// </summary>
public sealed class TwinSpecTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "transduce-twin-" + Guid.NewGuid().ToString("N"));

    public TwinSpecTests() => Directory.CreateDirectory(dir);

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private const int Vocab = 61;

    /// <summary>A tiny config of each family's shape; the importers' shapes are read from a transformers config.json.</summary>
    private TransformerConfig Config(string shape) => shape switch
    {
        // Pre-norm, final norms, scaled embeddings, fairseq sinusoids from row pad + 1 = 2, attention biases, shared and
        // tied embeddings, no output bias.
        "nllb" => M2M100Import.ReadModelConfig(new HfJsonFile(HfConfig(new JsonObject
        {
            ["model_type"] = "m2m_100", ["d_model"] = 32, ["encoder_layers"] = 2, ["decoder_layers"] = 2, ["encoder_attention_heads"] = 4,
            ["decoder_attention_heads"] = 4, ["encoder_ffn_dim"] = 48, ["decoder_ffn_dim"] = 48, ["activation_function"] = "relu",
            ["vocab_size"] = Vocab, ["pad_token_id"] = 1, ["max_position_embeddings"] = 40, ["scale_embedding"] = true, ["dropout"] = 0.1,
        }), required: true)),
        // RMS norm, relative positions, gated GELU (tanh), 4 heads × 6 ≠ 32 / 4, unscaled attention, no biases in the
        // feed-forward or the output, tied output scaled by d^-½.
        "t5" => T5Import.ReadModelConfig(HfConfig(new JsonObject
        {
            ["model_type"] = "t5", ["d_model"] = 32, ["num_heads"] = 4, ["d_kv"] = 6, ["d_ff"] = 40, ["num_layers"] = 2, ["num_decoder_layers"] = 3,
            ["feed_forward_proj"] = "gated-gelu", ["vocab_size"] = Vocab, ["relative_attention_num_buckets"] = 8,
            ["relative_attention_max_distance"] = 12, ["tie_word_embeddings"] = true, ["layer_norm_epsilon"] = 1e-6,
        })),
        // Flan-T5: relu here, untied lm_head, output scale 1.
        "flan-t5" => T5Import.ReadModelConfig(HfConfig(new JsonObject
        {
            ["model_type"] = "t5", ["d_model"] = 32, ["num_heads"] = 4, ["d_kv"] = 8, ["d_ff"] = 40, ["num_layers"] = 2,
            ["feed_forward_proj"] = "relu", ["vocab_size"] = Vocab, ["relative_attention_num_buckets"] = 8,
            ["relative_attention_max_distance"] = 12, ["tie_word_embeddings"] = false,
        })),
        // The other choices: learned positions with an offset, an embedding norm, no final norm on a pre-norm model, SwiGLU
        // without biases, layer norm ε 1e-3, an output bias, unscaled embeddings, separate vocabularies.
        "learned" => new TransformerConfig
        {
            SourceVocabSize = Vocab - 7, TargetVocabSize = Vocab, EmbeddingSize = 24, HiddenSize = 24, Heads = 3, FfnSize = 40, Layers = 2,
            Activation = "swiglu", FfnBias = false, NormEpsilon = 1e-3, EmbeddingNorm = true, PreNorm = true, FinalNorm = false,
            Positions = "learned", PositionOffset = 3, MaxPositions = 30, ScaleEmbedding = false, AttentionBias = true,
        },
        // No positions at all (order comes from the causal mask alone), exact gated GELU, post-norm RMS norm with final
        // norms, 2 heads × 7 inside a 20-wide model, one decoder block more than the encoder, a tied output scaled by ½.
        "none" => new TransformerConfig
        {
            SourceVocabSize = Vocab, TargetVocabSize = Vocab, EmbeddingSize = 20, HiddenSize = 20, Heads = 2, HeadSize = 7, FfnSize = 24,
            Layers = 1, DecoderLayers = 2, Activation = "gated_gelu", Norm = "rms_norm", FinalNorm = true, Positions = "none",
            ShareEmbeddings = true, TieEmbeddings = true, OutputScale = 0.5, OutputBias = false,
        },
        // Marian's sinusoid halves, post-norm layer norm, plain tanh GELU, unscaled attention with biases, separate embeddings.
        "halves" => new TransformerConfig
        {
            SourceVocabSize = Vocab, TargetVocabSize = Vocab, EmbeddingSize = 16, HiddenSize = 16, Heads = 2, FfnSize = 24, Layers = 2,
            Activation = "gelu_tanh", PositionalLayout = "halves", ScaleAttention = false, AttentionBias = true,
        },
        _ => throw new ArgumentException(shape),
    } with { PadId = 0, Dropout = 0 };

    private string HfConfig(JsonObject json)
    {
        string path = Path.Combine(dir, $"hf-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    /// <summary>The model of <paramref name="config"/> with random weights (norms and biases too), saved as a checkpoint.</summary>
    private Checkpoint Create(TransformerConfig config, string name)
    {
        manual_seed(5);
        var model = ModelRegistry.Create(config);
        using (no_grad())
            foreach (var (parameter, p) in model.named_parameters())
            {
                // Norm scales away from 1 and biases away from 0, relative position biases strong enough to move the scores.
                if (parameter.Contains("norm", StringComparison.OrdinalIgnoreCase) || parameter.EndsWith(".bias", StringComparison.Ordinal))
                    p.add_(randn_like(p).mul_(0.3));
                if (parameter.Contains("relativeBias", StringComparison.Ordinal)) p.mul_(8);
            }
        model.eval();
        var checkpoint = new Checkpoint
        {
            Model = model,
            ModelConfig = config,
            TextConfig = new TextConfig { Normalizer = "none", Tokenizer = "word" },
            SourceVocabulary = Placeholders(config.SourceVocabSize),
            TargetVocabulary = Placeholders(config.TargetVocabSize),
        };
        checkpoint.Save(Path.Combine(dir, name));
        return checkpoint;
    }

    private static Vocabulary Placeholders(int size) => Vocabulary.Build([Enumerable.Range(4, size - 4).Select(i => $"w{i}")]);

    private const string TwinScript = """
        import json, sys
        import torch
        from transduce_torch.checkpoint import load_checkpoint
        from transduce_torch.generate import greedy, source_tensors
        model = load_checkpoint(sys.argv[1])
        d = json.load(open(sys.argv[2]))
        source, lengths = source_tensors(d["sources"], None)
        with torch.inference_mode():
            logits = model(source, lengths, torch.tensor(d["targets"], dtype=torch.int64))
            tokens = greedy(model, source, lengths, d["max_lengths"])
        print(json.dumps({"logits": logits.flatten().tolist(), "greedy": tokens}))
        """;

    [Theory]
    [InlineData("nllb")]
    [InlineData("t5")]
    [InlineData("flan-t5")]
    [InlineData("learned")]
    [InlineData("none")]
    [InlineData("halves")]
    public void TheTwinComputesWhatDotnetComputes(string shape)
    {
        var config = Config(shape);
        using var checkpoint = Create(config, shape);
        var random = new Random(7);
        // Rows of different lengths (padding inside the batch); targets long enough to pass several relative buckets.
        int[][] sources = [.. new[] { 3, 17, 9, 1 }.Select(n => Enumerable.Range(0, n).Select(_ => random.Next(4, config.SourceVocabSize)).ToArray())];
        int[][] targets = [.. sources.Select(_ => new[] { 1 }.Concat(Enumerable.Range(0, 15).Select(_ => random.Next(3, config.TargetVocabSize))).ToArray())];
        int[] maxLengths = [14, 20, 9, 20];
        string input = Path.Combine(dir, "input.json");
        File.WriteAllText(input, JsonSerializer.Serialize(new { sources, targets, max_lengths = maxLengths }));

        var r = PythonTorch.Script(TwinScript, dir, Path.Combine(dir, shape), input);
        Assert.True(r.Code == 0, r.Err);
        var twin = JsonNode.Parse(r.Out)!.AsObject();
        var twinLogits = twin["logits"]!.AsArray().Select(x => x!.GetValue<float>()).ToArray();
        var twinGreedy = twin["greedy"]!.AsArray().Select(o => o!.AsArray().Select(t => t!.GetValue<int>()).ToArray()).ToArray();

        var ids = new SpecialIds(0, 1, 2);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var (source, lengths) = Batching.BuildSources(sources, ids, null);
        var target = tensor(targets.SelectMany(t => t.Select(x => (long)x)).ToArray(), [targets.Length, targets[0].Length]);
        var logits = checkpoint.Model.forward(source, lengths, target).contiguous().data<float>().ToArray();
        var greedy = GreedySearch.Decode(checkpoint.Model, source, lengths, ids, maxLengths);

        Assert.Equal(logits.Length, twinLogits.Length);
        Assert.Equal(targets.Length * targets[0].Length * config.TargetVocabSize, logits.Length);
        double worst = logits.Zip(twinLogits).Max(p => Math.Abs(p.First - p.Second));
        Assert.True(worst <= 1e-4, $"{shape}: logits differ by up to {worst.ToString("G3", CultureInfo.InvariantCulture)}");
        // Logits that spread (a degenerate network agrees with anything).
        Assert.True(logits.Max() - logits.Min() > 1, $"{shape}: logits span only {logits.Max() - logits.Min()}");
        for (int i = 0; i < sources.Length; i++)
            Assert.True(greedy[i].SequenceEqual(twinGreedy[i]), $"{shape}: row {i}: .NET [{string.Join(' ', greedy[i])}] vs twin [{string.Join(' ', twinGreedy[i])}]");
        Assert.True(greedy.Sum(g => g.Length) >= 10, $"{shape}: greedy outputs too short to compare ({string.Join(" | ", greedy.Select(g => g.Length))})");
    }

    [Fact]
    public void TheTwinRefusesWhatItDoesNotBuildInOneLine()
    {
        const string Script = """
            from transduce_torch.model import build_model
            base = {"architecture": "transformer", "source_vocab_size": 20, "target_vocab_size": 20, "hidden_size": 8,
                    "embedding_size": 8, "heads": 2}
            for change in ({"norm": "batch_norm"}, {"positions": "rotary"}, {"activation": "gated_tanh"},
                           {"positional_layout": "spiral"}, {"rotary_dim": 4}, {"hidden_size": 9, "embedding_size": 9}):
                try:
                    build_model({**base, **change})
                    print("built", change)
                except ValueError as e:
                    print(e)
            """;
        var r = PythonTorch.Script(Script, dir);
        Assert.True(r.Code == 0, r.Err);
        var lines = r.Out.TrimEnd('\n').Split('\n');
        Assert.Equal(
        [
            "model config: 'norm' 'batch_norm' is not implemented by the PyTorch twin (known: layer_norm, rms_norm)",
            "model config: 'positions' 'rotary' is not implemented by the PyTorch twin (known: sinusoidal, learned, none, relative)",
            "model config: 'activation' 'gated_tanh' is not implemented by the PyTorch twin (known: relu, gelu, gelu_tanh, swish, gated_relu, gated_gelu, gated_gelu_tanh, swiglu)",
            "model config: 'positional_layout' 'spiral' is not implemented by the PyTorch twin (known: interleaved, halves, fairseq)",
            "model config: 'rotary_dim' is not implemented by the PyTorch twin",
            "model config: 'hidden_size' 9 must be divisible by 'heads' 2",
        ], lines);
    }
}
