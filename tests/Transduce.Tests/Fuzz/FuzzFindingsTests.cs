using System.Text;
using Microsoft.AspNetCore.Http;
using Transduce.Serving;
using Transduce.Training;

namespace Transduce.Tests.Fuzz;

/// <summary>What the fuzz targets of <see cref="ParserFuzzTests"/> found, kept as regular tests.</summary>
public sealed class FuzzFindingsTests
{
    [Theory]
    [InlineData("\"shape\":[2,null]", "tensor 'a' shape[1] must be an integer, not null")]
    [InlineData("\"shape\":[\"2\"]", "tensor 'a' shape[0] must be an integer, not \"2\"")]
    [InlineData("\"shape\":[2.5]", "tensor 'a' shape[0] must be an integer, not 2.5")]
    [InlineData("\"shape\":{}", "tensor 'a' shape must be an array of integers")]
    public void SafetensorsShapeOrOffsetsThatAreNotIntegersAreOneLine(string shape, string problem)
    {
        // Found by the safetensors target (in .ci/run's exploration): "null" written over a dimension made the header
        // reader throw NullReferenceException, which escaped as a stack trace.
        using var temp = new TempDir();
        string header = "{\"a\":{\"dtype\":\"F32\"," + shape + ",\"data_offsets\":[0,8]}}";
        byte[] h = Encoding.UTF8.GetBytes(header);
        string path = temp.WriteBytes("model.safetensors", [.. BitConverter.GetBytes((ulong)h.Length), .. h, .. new byte[8]]);
        var e = Assert.Throws<InvalidDataException>(() => Transduce.IO.Safetensors.ReadHeader(path));
        Assert.Equal($"{path}: {problem}", e.Message);

        string offsets = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,null]}}";
        byte[] o = Encoding.UTF8.GetBytes(offsets);
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)o.Length), .. o, .. new byte[8]]);
        e = Assert.Throws<InvalidDataException>(() => Transduce.IO.Safetensors.ReadHeader(path));
        Assert.Equal($"{path}: tensor 'a' data_offsets[1] must be an integer, not null", e.Message);
    }

    [Fact]
    public void YamlDocumentEndBeforeAnyContentIsOneLine()
    {
        // Found by the run-config target: "..." (a document end marker) where a key was, an InvalidOperationException
        // from YamlDotNet's scanner that escaped as a stack trace.
        using var temp = new TempDir();
        string path = temp.WriteText("run.yaml", "...\nel:\n  hidden_size: 32\n");
        var e = Assert.Throws<InvalidDataException>(() => RunConfig.Load(path));
        Assert.StartsWith($"{path}: not valid YAML", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void AModelFileStringEscapingALoneSurrogateIsOneLine()
    {
        // Found by the BPE target: "\udc00" is valid JSON but no text; reading it threw InvalidOperationException.
        using var temp = new TempDir();
        string text = SavedBpeModel(temp);
        int quote = text.IndexOf("\"merges\"", StringComparison.Ordinal);
        int first = text.IndexOf('"', text.IndexOf('[', quote) + 1);
        string path = temp.WriteText("bad.bpe.json", text[..(first + 1)] + "\\udc00" + text[(first + 1)..]);
        var e = Assert.Throws<InvalidDataException>(() => Transduce.Text.BpeTokenizer.Load(path));
        Assert.Contains("lone UTF-16 surrogate", e.Message);
        Assert.Contains(path, e.Message);
        Assert.DoesNotContain('\n', e.Message);

        var vocabulary = Transduce.Text.Vocabulary.Build([["a", "b"]]);
        string vocabPath = Path.Combine(Path.GetDirectoryName(path)!, "v.json");
        vocabulary.Save(vocabPath);
        string json = File.ReadAllText(vocabPath);
        int tokens = json.IndexOf('"', json.IndexOf('[', json.IndexOf("\"tokens\"", StringComparison.Ordinal)) + 1);
        File.WriteAllText(vocabPath, json[..(tokens + 1)] + "\\udc00" + json[(tokens + 1)..]);
        var v = Assert.Throws<InvalidDataException>(() => Transduce.Text.Vocabulary.Load(vocabPath));
        Assert.Contains("lone UTF-16 surrogate", v.Message);
    }

    [Fact]
    public async Task InvalidJsonBodyWithLineBreaksIsAOneLineProblem()
    {
        // Found by the request-body target: the JSON reader quotes the body, CR and all, in its message.
        byte[] body = Encoding.UTF8.GetBytes("f{\"te\rxt\": [\"a\n\"]}");
        var context = new DefaultHttpContext();
        context.Request.ContentType = "application/json";
        context.Request.Body = new MemoryStream(body);
        var (request, problem) = await TranslateRequestReader.ReadAsync(context.Request, new ServeOptions(), CancellationToken.None);
        Assert.Null(request);
        Assert.NotNull(problem);
        Assert.Equal(400, problem.Status);
        Assert.StartsWith("the body is not valid JSON", problem.Detail);
        Assert.False(problem.Detail.Contains('\n') || problem.Detail.Contains('\r'), problem.Detail);
    }

    [Fact]
    public async Task UnknownFieldNameWithALineBreakIsAOneLineProblem()
    {
        // Found by the request-body target: a field name with an escaped CR, quoted raw in the detail.
        var context = new DefaultHttpContext();
        context.Request.ContentType = "application/json";
        context.Request.Body = new MemoryStream(Encoding.UTF8.GetBytes("{\"text\": [\"a\"], \"ta\\rget\": 1}"));
        var (_, problem) = await TranslateRequestReader.ReadAsync(context.Request, new ServeOptions(), CancellationToken.None);
        Assert.NotNull(problem);
        Assert.StartsWith("unknown field 'ta\\rget'", problem.Detail);
    }

    [Fact]
    public void JsonRunConfigWithALineBreakInTheQuotedInputIsOneLine()
    {
        // Found by the run-config target: System.Text.Json quotes the offending input, line breaks and all.
        using var temp = new TempDir();
        string path = temp.WriteText("run.json", "training:\n  epochs: 2\n");
        var e = Assert.Throws<InvalidDataException>(() => RunConfig.Load(path));
        Assert.Contains("not valid JSON", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void AnUnknownRunConfigKeyWithALineBreakIsOneLine()
    {
        // Found by the run-config target (seed 3G7pOKA04x_1): a key of several lines was quoted as it was.
        var e = Assert.Throws<InvalidDataException>(() => RunConfig.Parse("\"trai\\nning\": 1\n", "run.yaml"));
        Assert.Contains("unknown key 'trai\\nning'", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void AnUnknownPresetWithALineBreakIsOneLine()
    {
        // Found by the run-config target (seed 6j_tN0hnr--1): a preset name holding a line break was quoted as it was.
        var e = Assert.Throws<InvalidDataException>(() => RunConfig.Parse("preset: \"d2l-\\n\"\n", "run.yaml"));
        Assert.Contains("unknown preset 'd2l-\\n'", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void ABpeModelFileQuotingALineBreakIsOneLine()
    {
        // Found by the BPE target (seed czJBOVxIxh71): an unknown normalization holding a line break was quoted as it was.
        using var temp = new TempDir();
        string text = SavedBpeModel(temp);
        // The JSON escape \n: the value read back holds a real line break.
        string bad = System.Text.RegularExpressions.Regex.Replace(text, "\"normalization\":\\s*\"none\"", "\"normalization\": \"\\ne\"");
        Assert.NotEqual(text, bad);
        string path = temp.WriteText("bad.bpe.json", bad);
        var e = Assert.Throws<InvalidDataException>(() => Transduce.Text.BpeTokenizer.Load(path));
        Assert.Contains("unsupported normalization \"\\ne\"", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    // The text of a tiny trained BPE model file as Save writes it, for a test to corrupt.
    private static string SavedBpeModel(TempDir temp)
    {
        var bpe = Transduce.Text.BpeTrainer.Train(["low lower lowest", "new newer"],
            new Transduce.Text.BpeTrainingOptions { VocabSize = 270, MinPairFrequency = 1, MinCharacterFrequency = 1 });
        string good = temp.WriteText("good.bpe.json", "");
        bpe.Save(good);
        return File.ReadAllText(good);
    }
}
