using System.Text.Json;
using Transduce.Checkpoints;
using Transduce.Translation;

namespace Transduce.Tests.Import.M2M100;

/// <summary>
/// An NLLB folder through <see cref="Checkpoint.Load"/> and <see cref="Translator"/>: languages chosen per call, the
/// same output text as transformers' <c>generate</c> + <c>decode(skip_special_tokens=True)</c>.
/// </summary>
public sealed class M2M100ConvertTests
{
    private static readonly Lazy<JsonElement> s_expected = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(M2M100ParityTests.Folder, "expected.json"))).RootElement);

    private static string[] Strings(JsonElement e) => e.EnumerateArray().Select(x => x.GetString()!).ToArray();

    [Fact]
    public void TranslateTakesTheFolderAndTheLanguages()
    {
        var expected = s_expected.Value;
        using var translator = new Translator(Checkpoint.Load(M2M100ParityTests.Folder));
        var options = new TranslationOptions { SourceLanguage = "eng_Latn", TargetLanguage = "fra_Latn" };
        var sentences = Strings(expected.GetProperty("sentences"));
        Assert.Equal(Strings(expected.GetProperty("greedy_text")), translator.Translate(sentences, options));
        Assert.Equal(Strings(expected.GetProperty("beam4_text").GetProperty("False")), translator.Translate(sentences, options with { Beam = 4 }));
        // The folder's src_lang is the default source language.
        Assert.Equal(Strings(expected.GetProperty("greedy_text")), translator.Translate(sentences, options with { SourceLanguage = null }));
    }

    [Fact]
    public void AnM2M100FolderTranslatesWithItsCodes()
    {
        var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(M2M100ParityTests.M2M100Folder, "expected.json"))).RootElement;
        using var translator = new Translator(Checkpoint.Load(M2M100ParityTests.M2M100Folder));
        Assert.Equal(100, translator.Checkpoint.Languages!.Codes.Count);
        var options = new TranslationOptions { SourceLanguage = "en", TargetLanguage = "fr" };
        var sentences = Strings(expected.GetProperty("sentences"));
        Assert.Equal(Strings(expected.GetProperty("greedy_text")), translator.Translate(sentences, options));
        Assert.Equal(Strings(expected.GetProperty("beam4_text").GetProperty("False")), translator.Translate(sentences, options with { Beam = 4 }));
    }

    [Fact]
    public void ASavedCheckpointKeepsItsLanguages()
    {
        var expected = s_expected.Value;
        using var dir = new TempDir();
        string saved = Path.Combine(dir.Path, "nllb.transduce");
        using (var converted = Checkpoint.Load(M2M100ParityTests.Folder)) converted.Save(saved);
        using var translator = new Translator(Checkpoint.Load(saved));
        Assert.Equal(["deu_Latn", "eng_Latn", "fra_Latn", "spa_Latn"], translator.Checkpoint.Languages!.Codes);
        var sentences = Strings(expected.GetProperty("sentences"));
        Assert.Equal(Strings(expected.GetProperty("greedy_text")),
            translator.Translate(sentences, new TranslationOptions { SourceLanguage = "eng_Latn", TargetLanguage = "fra_Latn" }));

        // A table naming an id outside the vocabulary is refused, naming the file and the key.
        string config = Path.Combine(saved, "config.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        json["languages"]!["target"]!["fra_Latn"] = 100000;
        File.WriteAllText(config, json.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(saved).Dispose());
        Assert.StartsWith(config, e.Message);
        Assert.Contains("'languages.target.fra_Latn'", e.Message);
    }

    [Fact]
    public void LanguagesAreCheckedByName()
    {
        using var translator = new Translator(Checkpoint.Load(M2M100ParityTests.Folder));
        var sentences = new[] { "The house is wonderful." };
        var missing = Assert.Throws<ArgumentException>(() => translator.Translate(sentences, new TranslationOptions { SourceLanguage = "eng_Latn" }));
        Assert.Contains("name the target language", missing.Message);
        var unknown = Assert.Throws<ArgumentException>(() => translator.Translate(sentences, new TranslationOptions { TargetLanguage = "fr" }));
        Assert.Contains("fra_Latn", unknown.Message);
        var source = Assert.Throws<ArgumentException>(() => translator.Translate(sentences, new TranslationOptions { SourceLanguage = "english", TargetLanguage = "fra_Latn" }));
        Assert.Contains("source language", source.Message);
    }
}
