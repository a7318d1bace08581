using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.Checkpoints;

namespace Transduce.Tests.Import.T5;

/// <summary>
/// <c>T5Tokenizer</c>'s <c>legacy: false</c> segmentation (with and without <c>add_prefix_space</c>) and
/// <c>clean_up_tokenization_spaces</c> from <c>tokenizer_config.json</c>, against <c>python/reference/t5_reference.py --extra</c>.
/// </summary>
public sealed class T5TokenizerOptionsTests
{
    private static readonly Lazy<JsonElement> s_cases = new(() => JsonDocument.Parse(File.ReadAllText(
        Path.Combine(T5ParityTests.Folder("t5-tiny"), "..", "tokenizer-nonlegacy.json"))).RootElement);

    private static string Folder(TempDir temp, Action<JsonObject> edit)
    {
        string folder = T5ConvertTests.Assemble("t5-tiny", temp);
        string path = Path.Combine(folder, "tokenizer_config.json");
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
        return folder;
    }

    [Theory]
    [InlineData("legacy", null)]
    [InlineData("ids", true)]
    [InlineData("ids_no_prefix_space", false)]
    public void InputIdsAreT5TokenizersForEachSetting(string key, bool? addPrefixSpace)
    {
        using var temp = new TempDir();
        string folder = Folder(temp, json =>
        {
            json["legacy"] = addPrefixSpace is null;
            if (addPrefixSpace is bool b) json["add_prefix_space"] = b;
        });
        var rows = T5ConvertTests.T5Rows(folder);
        using var converted = Checkpoint.Load(folder);
        using var dir = new TempDir();
        converted.Save(Path.Combine(dir.Path, "saved")); // the setting travels with the checkpoint
        using var checkpoint = Checkpoint.Load(Path.Combine(dir.Path, "saved"));
        Assert.Equal(addPrefixSpace is null, checkpoint.TextConfig.Legacy);
        var pipeline = checkpoint.CreateTextPipeline();
        int differing = 0;
        foreach (var c in s_cases.Value.EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            var theirs = c.GetProperty(key).EnumerateArray().Select(x => x.GetInt32()).ToArray();
            var ours = pipeline.EncodeSource(text).Append(checkpoint.SourceVocabulary.EosId).Select(i => rows[i]).ToArray();
            Assert.True(theirs.SequenceEqual(ours), $"'{text}': transformers [{string.Join(", ", theirs)}], ours [{string.Join(", ", ours)}]");
            if (!theirs.SequenceEqual(c.GetProperty("legacy").EnumerateArray().Select(x => x.GetInt32()))) differing++;
        }
        Assert.True(addPrefixSpace is null ? differing == 0 : differing >= 5, $"{differing} cases differ from the legacy segmentation");
    }

    [Fact]
    public void CleanUpTokenizationSpacesAppliesWhenSet()
    {
        using var temp = new TempDir();
        using var plain = Checkpoint.Load(T5ConvertTests.Assemble("t5-tiny", temp));
        var ids = plain.CreateTextPipeline().EncodeSource("Hello . World , it is ok ?");
        Assert.Equal("Hello . World , it is ok ?", plain.CreateTextPipeline().Decode(ids));
        using var temp2 = new TempDir();
        using var cleaned = Checkpoint.Load(Folder(temp2, json => json["clean_up_tokenization_spaces"] = true));
        Assert.Equal("Hello. World, it is ok?", cleaned.CreateTextPipeline().Decode(ids));
    }
}
