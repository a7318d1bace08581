using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.Models;
using Transduce.Models.Bahdanau;
using Transduce.Models.Gru;
using Transduce.Models.Transformer;

namespace Transduce.Tests.Models;

/// <summary>The registry is the one list of architectures; configs round-trip through config.json by their architecture.</summary>
public sealed class ModelRegistryTests
{
    // The built-in ones (tests elsewhere register architectures of their own in this process).
    public static TheoryData<string> Names => ["gru", "bahdanau", "transformer"];

    [Fact]
    public void EveryArchitectureIsRegisteredOnceWithItsConfigType()
    {
        Assert.Equal(["gru", "bahdanau", "transformer"], ModelRegistry.Names.Take(3));
        Assert.Equal(ModelRegistry.Names.Distinct().Count(), ModelRegistry.Names.Count);
        Assert.Equal(typeof(GruConfig), ModelRegistry.Get("gru").ConfigType);
        Assert.Equal(typeof(BahdanauConfig), ModelRegistry.Get("bahdanau").ConfigType);
        Assert.Equal(typeof(TransformerConfig), ModelRegistry.Get("transformer").ConfigType);
        Assert.All(ModelRegistry.Architectures, a => Assert.False(string.IsNullOrWhiteSpace(a.Description)));
        var e = Assert.Throws<ArgumentException>(() => ModelRegistry.Get("lstm"));
        Assert.Contains("unknown architecture 'lstm' (known: gru, bahdanau, transformer", e.Message);
        Assert.Contains("ModelRegistry.Register", e.Message);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void ConfigureCreateAndTheConfigJsonRoundTrip(string name)
    {
        var settings = new ModelSettings(EmbeddingSize: 8, HiddenSize: 16, Layers: 1, Heads: 2, FfnSize: 24, PreNorm: true, Dropout: 0.1);
        var config = ModelRegistry.Get(name).Configure(settings, 30, 40, 0);
        Assert.Equal(name, config.Architecture);
        Assert.Equal((30, 40, 16, 1), (config.SourceVocabSize, config.TargetVocabSize, config.HiddenSize, config.Layers));
        using var model = ModelRegistry.Create(config);
        Assert.True(model.parameters().Sum(p => p.numel()) > 0);

        var json = config.ToJson();
        Assert.Equal("architecture", json.First().Key);
        var back = JsonSerializer.Deserialize<ModelConfig>(json.ToJsonString(), ModelConfig.Json);
        Assert.Equal(config, back);
        Assert.IsType(ModelRegistry.Get(name).ConfigType, back);
    }

    [Fact]
    public void EachArchitectureTakesTheSettingsItHas()
    {
        var settings = new ModelSettings(EmbeddingSize: 8, HiddenSize: 16, Heads: 2, FfnSize: 24, PreNorm: true, TieEmbeddings: true);
        var gru = Assert.IsType<GruConfig>(ModelRegistry.Get("gru").Configure(settings, 30, 40, 0));
        Assert.Equal(8, gru.EmbeddingSize);
        Assert.DoesNotContain("heads", gru.ToJson().Select(kv => kv.Key));
        var transformer = Assert.IsType<TransformerConfig>(ModelRegistry.Get("transformer").Configure(settings, 30, 40, 0));
        Assert.Equal((16, 16, 2, 24, true, true), (transformer.EmbeddingSize, transformer.HiddenSize, transformer.Heads, transformer.FfnSize, transformer.PreNorm, transformer.TieEmbeddings));
        Assert.Equal(16, transformer.EmbeddingSize); // a Transformer's embeddings are as wide as its model
        Assert.Null(gru.MaxSequenceLength);
        Assert.Equal(1024, transformer.MaxSequenceLength);
    }

    [Fact]
    public void ConfigsWrittenBeforeTheRegistryStillLoad()
    {
        // config.json "model" sections as the flat ModelConfig of earlier versions wrote them: every field for every architecture.
        const string gru = """
            {"architecture":"gru","source_vocab_size":195,"target_vocab_size":213,"embedding_size":256,"hidden_size":256,"layers":2,
             "dropout":0.2,"pad_id":0,"heads":4,"ffn_size":64,"activation":"relu","pre_norm":false,"tie_embeddings":false,
             "share_embeddings":false,"attention_bias":false,"scale_embedding":true,"max_positions":1024,"decoder_layers":null,
             "positional_layout":"interleaved"}
            """;
        var g = Assert.IsType<GruConfig>(JsonSerializer.Deserialize<ModelConfig>(gru, ModelConfig.Json));
        Assert.Equal((195, 213, 256, 256, 2, 0.2, 0), (g.SourceVocabSize, g.TargetVocabSize, g.EmbeddingSize, g.HiddenSize, g.Layers, g.Dropout, g.PadId));
        var t = Assert.IsType<TransformerConfig>(JsonSerializer.Deserialize<ModelConfig>(gru.Replace("\"gru\"", "\"transformer\""), ModelConfig.Json));
        Assert.Equal((4, 64, "relu", 1024, "interleaved"), (t.Heads, t.FfnSize, t.Activation, t.MaxPositions, t.PositionalLayout));
        // The oldest configs had no architecture field: the default then was the GRU.
        var untagged = JsonNode.Parse(gru)!.AsObject();
        untagged.Remove("architecture");
        Assert.IsType<GruConfig>(JsonSerializer.Deserialize<ModelConfig>(untagged.ToJsonString(), ModelConfig.Json));
    }

    [Fact]
    public void AConfigOfTheWrongTypeIsRefusedByName()
    {
        var transformer = ModelRegistry.Get("transformer").Configure(new ModelSettings(HiddenSize: 16, Heads: 2), 10, 10, 0);
        var e = Assert.Throws<ArgumentException>(() => ModelRegistry.Get("gru").Create(transformer));
        Assert.Contains("'gru' model needs a GruConfig, not a TransformerConfig", e.Message);
        Assert.Throws<ArgumentException>(() => ModelRegistry.Create(((TransformerConfig)transformer) with { Heads = 3 })); // 16 is not divisible by 3
    }
}
