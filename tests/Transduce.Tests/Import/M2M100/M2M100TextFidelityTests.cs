using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Import.HuggingFace;
using Transduce.Import.M2M100;
using Transduce.Text;
using Transduce.Translation;

namespace Transduce.Tests.Import.M2M100;

/// <summary>
/// What transformers' NLLB / M2M100 tokenizers do beyond plain text, against <c>python/reference/m2m100_reference.py --extra</c>:
/// special tokens and language codes typed in a source are split out (with <c>&lt;mask&gt;</c>'s lstrip), NLLB's
/// <c>legacy_behaviour</c> (<c>pieces &lt;/s&gt; [lang]</c>) through translate and fine-tuning, and <c>clean_up_tokenization_spaces</c>.
/// </summary>
public sealed class M2M100TextFidelityTests
{
    private static readonly Lazy<JsonElement> s_cases = new(() => JsonDocument.Parse(File.ReadAllText(
        Path.Combine(M2M100ParityTests.Folder, "..", "special-tokens-in-text.json"))).RootElement);

    private static readonly Lazy<JsonElement> s_legacy = new(() => JsonDocument.Parse(File.ReadAllText(
        Path.Combine(M2M100ParityTests.ShardsFolder, "expected-legacy.json"))).RootElement);

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    private static string[] Strings(JsonElement e) => e.EnumerateArray().Select(x => x.GetString()!).ToArray();

    /// <summary>Our ids of a converted folder → the folder's ids, by token text (our &lt;eos&gt; is the folder's &lt;/s&gt;).</summary>
    private static int[] FolderIds(Checkpoint checkpoint, MultilingualTokenizer tokenizer, IEnumerable<int> ours)
    {
        var byText = Enumerable.Range(0, tokenizer.Size).Where(id => tokenizer.Token(id) is not null)
            .GroupBy(id => tokenizer.Token(id)!).ToDictionary(g => g.Key, g => g.First());
        return ours.Select(id => id == checkpoint.SourceVocabulary.EosId ? NllbTokenizer.EosId : byText[checkpoint.SourceVocabulary[id]]).ToArray();
    }

    public static TheoryData<string, string, string> Folders => new()
    {
        { "nllb", "nllb-tiny", "eng_Latn" },
        { "nllb_legacy", "nllb-tiny-shards", "eng_Latn" },
        { "m2m100", "m2m100-tiny", "en" },
    };

    private static string FolderPath(string name) => Path.Combine(M2M100ParityTests.Folder, "..", name);

    [Theory]
    [MemberData(nameof(Folders))]
    public void SpecialTokensTypedInASourceAreSplitOutAsTransformersDoes(string key, string folder, string language)
    {
        var tokenizer = MultilingualTokenizer.ForFolder(new HuggingFaceFolder(FolderPath(folder), "test"));
        using var checkpoint = Checkpoint.Load(FolderPath(folder));
        var pipeline = checkpoint.CreateTextPipeline();
        var context = new PairEncodingContext(SourceLanguage: language, SourceLanguageIds: checkpoint.Languages!.Source);
        var framing = checkpoint.PairEncoding.Ids(checkpoint.TargetVocabulary);
        int cases = 0;
        foreach (var c in s_cases.Value.GetProperty(key).EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            var expected = Ints(c.GetProperty("ids"));
            Assert.Equal(expected, tokenizer.EncodeSource(text, language));
            // The converted checkpoint: the family's encoding, framed as batching frames it (the end token appended or not).
            var ours = Batching.Frame(checkpoint.PairEncoding.Source(pipeline, text, context), framing, null);
            Assert.True(expected.SequenceEqual(FolderIds(checkpoint, tokenizer, ours)), $"'{text}': [{string.Join(", ", expected)}] vs [{string.Join(", ", FolderIds(checkpoint, tokenizer, ours))}]");
            cases++;
        }
        Assert.True(cases >= 6);
    }

    [Fact]
    public void ALegacyFolderTranslatesAsGenerate()
    {
        var expected = s_legacy.Value;
        using var translator = new Translator(Checkpoint.Load(M2M100ParityTests.ShardsFolder));
        Assert.Equal("m2m100-legacy", translator.Checkpoint.PairEncoding.Name);
        var options = new TranslationOptions { SourceLanguage = "eng_Latn", TargetLanguage = "fra_Latn" };
        var sentences = Strings(expected.GetProperty("sentences"));
        Assert.Equal(Strings(expected.GetProperty("greedy_text")), translator.Translate(sentences, options));
        // Token for token: the forced target code first, and what follows.
        var tokenizer = MultilingualTokenizer.ForFolder(new HuggingFaceFolder(M2M100ParityTests.ShardsFolder, "test"));
        var greedy = translator.TranslateIds(sentences, options).Select(ids => FolderIds(translator.Checkpoint, tokenizer, ids)).ToArray();
        var reference = expected.GetProperty("greedy").EnumerateArray().Select(r => Ints(r).TakeWhile(id => id != NllbTokenizer.EosId).ToArray()).ToArray();
        Assert.Equal(reference, greedy);
        // The folder sets no early_stopping: generate's default (False).
        Assert.Equal(Strings(expected.GetProperty("beam4_text").GetProperty("False")), translator.Translate(sentences, options with { Beam = 4 }));
        // A saved checkpoint keeps the layout.
        using var dir = new TempDir();
        string saved = Path.Combine(dir.Path, "legacy.transduce");
        translator.Checkpoint.Save(saved);
        using var reloaded = new Translator(Checkpoint.Load(saved));
        Assert.Equal(Strings(expected.GetProperty("greedy_text")), reloaded.Translate(sentences, options));
    }

    [Fact]
    public void ALegacyFolderFineTunesOnTransformersLabels()
    {
        var pair = s_legacy.Value.GetProperty("train_pair");
        using var checkpoint = Checkpoint.Load(M2M100ParityTests.ShardsFolder);
        var tokenizer = MultilingualTokenizer.ForFolder(new HuggingFaceFolder(M2M100ParityTests.ShardsFolder, "test"));
        var context = new PairEncodingContext("eng_Latn", "fra_Latn", SourceLanguageIds: checkpoint.Languages!.Source, TargetLanguageIds: checkpoint.Languages.Target);
        var data = TranslationData.Encode([new SentencePair(pair.GetProperty("source").GetString()!, pair.GetProperty("target").GetString()!)],
            checkpoint.CreateTextPipeline(), checkpoint.PairEncoding, context);
        using var batch = Batching.Build(data.Pairs, checkpoint.PairEncoding.Ids(checkpoint.TargetVocabulary), null);
        int[] Row(TorchSharp.torch.Tensor t) => FolderIds(checkpoint, tokenizer, t[0].data<long>().Select(x => (int)x));
        Assert.Equal(Ints(pair.GetProperty("input_ids")), Row(batch.Source));
        Assert.Equal(Ints(pair.GetProperty("labels")), Row(batch.TargetOutput));
        // The decoder starts with our <bos> (the folder's </s>, decoder_start_token_id), then the labels but the last.
        var decoderInput = batch.TargetInput[0].data<long>().Select(x => (int)x).ToArray();
        Assert.Equal(checkpoint.TargetVocabulary.BosId, decoderInput[0]);
        Assert.Equal(Ints(pair.GetProperty("decoder_input_ids"))[1..], FolderIds(checkpoint, tokenizer, decoderInput[1..]));
    }

    [Theory]
    [InlineData(null, false)]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public void CleanUpTokenizationSpacesIsTheFolders(bool? setting, bool cleaned)
    {
        var c = s_cases.Value.GetProperty("clean_up");
        using var dir = new TempDir();
        foreach (var file in Directory.GetFiles(M2M100ParityTests.Folder))
            File.Copy(file, Path.Combine(dir.Path, Path.GetFileName(file)));
        string config = Path.Combine(dir.Path, "tokenizer_config.json");
        var json = JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        json.Remove("clean_up_tokenization_spaces");
        if (setting is bool b) json["clean_up_tokenization_spaces"] = b;
        File.WriteAllText(config, json.ToJsonString());
        using var checkpoint = Checkpoint.Load(dir.Path);
        var tokenizer = MultilingualTokenizer.ForFolder(new HuggingFaceFolder(dir.Path, "test"));
        var vocabulary = checkpoint.TargetVocabulary;
        var ours = Ints(c.GetProperty("ids")).Select(id => vocabulary[tokenizer.Token(id)!]).ToArray();
        Assert.Equal(c.GetProperty(cleaned ? "cleaned" : "text").GetString(), checkpoint.CreateTextPipeline().Decode(ours));
    }
}
