using Transduce.Import.HuggingFace;
using Transduce.Inference;

namespace Transduce.Tests.Import.HuggingFace;

/// <summary>The shared reader of a Hugging Face folder's decoding settings: transformers' meaning, and hostile values refused by name.</summary>
public sealed class HfGenerationConfigTests : IDisposable
{
    private static readonly HfConfigDefaults Defaults = new(PadTokenId: 1, EosTokenId: 2, DecoderStartTokenId: 2, BosTokenId: 0, ForcedEosTokenId: 2);
    private readonly string dir = Directory.CreateTempSubdirectory("hf-gen-").FullName;

    private HfGenerationConfig Read(string config, string? generation = null, int vocabulary = 100, int? positions = 1024)
    {
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        string path = Path.Combine(dir, "generation_config.json");
        if (generation is null) File.Delete(path);
        else File.WriteAllText(path, generation);
        return HfGenerationConfig.Read(dir, Defaults, vocabulary, positions);
    }

    [Fact]
    public void EveryRuleIsReadWithTransformersMeaning()
    {
        var g = Read("""{"pad_token_id": 1}""", """
            {"eos_token_id": [2], "decoder_start_token_id": 2, "forced_bos_token_id": 7, "num_beams": 5, "max_length": 200,
             "min_length": 10, "length_penalty": -0.5, "early_stopping": "never", "no_repeat_ngram_size": 3,
             "repetition_penalty": 1.2, "bad_words_ids": [[2], [9], [4, 5, 6]]}
            """);
        Assert.Equal((2, 2, 1, 7), (g.DecoderStartTokenId, g.EosTokenId, g.PadTokenId, g.ForcedBosTokenId));
        Assert.Null(g.ForcedEosTokenId); // generation_config.json is read alone: the class default does not apply
        Assert.Equal((5, 199, 9), (g.NumBeams, g.NewTokenLimit, g.MinNewTokenCount));
        var s = g.ToSettings();
        Assert.Equal([9], s.BannedTokens); // the lone end token is dropped, as transformers does
        Assert.Equal([4, 5, 6], Assert.Single(s.BannedSequences));
        Assert.Equal((3, 1.2, 9, 7, EarlyStopping.Never, -0.5), (s.NoRepeatNgramSize, s.RepetitionPenalty, s.MinLength, s.ForcedBosTokenId, s.EarlyStopping, s.LengthPenalty));
        var search = s.Beam(5);
        Assert.Equal((3, 1.2, 9, (int?)7), (search.NoRepeatNgramSize, search.RepetitionPenalty, search.MinLength, search.ForcedBosToken));
    }

    [Fact]
    public void LengthsFollowTransformers5()
    {
        // Without generation_config.json: config.json's keys, then the class defaults (forced eos); no max_length: 20 new tokens.
        var g = Read("""{"eos_token_id": 2, "min_new_tokens": 4, "min_length": 30}""");
        Assert.Equal((20, 4, (int?)2), (g.NewTokenLimit, g.MinNewTokenCount, g.ForcedEosTokenId));
        Assert.Equal(15, Read("{}", """{"max_length": 50, "max_new_tokens": 15}""").NewTokenLimit); // max_new_tokens wins
        Assert.Equal(7, Read("{}", "{}", positions: 8).NewTokenLimit); // the default stays within the positions
    }

    [Theory]
    [InlineData("""{"eos_token_id": 100}""", "'eos_token_id' 100 is outside the vocabulary of 100")]
    [InlineData("""{"eos_token_id": [2, 3]}""", "several end tokens")]
    [InlineData("""{"forced_bos_token_id": -1}""", "'forced_bos_token_id' -1 is outside the vocabulary")]
    [InlineData("""{"num_beams": 100000}""", "'num_beams' must be between 1 and 256 (got 100000)")]
    [InlineData("""{"max_length": 1000000000}""", "'max_length' 1000000000 is larger than any supported model")]
    [InlineData("""{"no_repeat_ngram_size": -2}""", "'no_repeat_ngram_size' must not be negative")]
    [InlineData("""{"repetition_penalty": 0}""", "'repetition_penalty' must be a positive finite number")]
    [InlineData("""{"bad_words_ids": [[3, 100]]}""", "'bad_words_ids': id 100 is outside the vocabulary of 100")]
    [InlineData("""{"bad_words_ids": [[]]}""", "'bad_words_ids': each entry must be a non-empty list")]
    [InlineData("""{"bad_words_ids": 5}""", "'bad_words_ids' must be a non-empty list of lists")]
    [InlineData("""{"min_length": 60, "max_length": 50}""", "'min_length' asks for more tokens (59) than the length limit allows (49)")]
    [InlineData("""{"early_stopping": "sometimes"}""", "'early_stopping' must be true, false or \"never\"")]
    [InlineData("""{"forced_eos_token_id": 3}""", "'forced_eos_token_id' 3 differs from 'eos_token_id' 2")]
    public void HostileValuesAreOneLineNamingTheFileAndKey(string generation, string message)
    {
        var e = Assert.Throws<InvalidDataException>(() => Read("{}", generation));
        Assert.StartsWith(Path.Combine(dir, "generation_config.json") + ": ", e.Message);
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);
}
