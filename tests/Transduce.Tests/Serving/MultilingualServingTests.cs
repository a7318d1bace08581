using System.Net;
using System.Text.Json;
using Transduce.Serving;
using Transduce.Tests.Import.M2M100;
using Transduce.Translation;

namespace Transduce.Tests.Serving;

/// <summary>An NLLB folder served: <c>/v1/models</c> lists its languages, requests choose them by code.</summary>
public sealed class MultilingualServingTests
{
    [Fact]
    public async Task RequestsNameTheLanguagesAndModelsListThem()
    {
        using var backend = new TranslatorBackend(Translator.Load(M2M100ParityTests.Folder));
        var info = ModelInfo.From(backend.Translator.Checkpoint, M2M100ParityTests.Folder, "nllb");
        await using var service = await TestService.StartAsync(new ServeOptions(), backend, info);

        var models = await service.Client.GetStringAsync("/v1/models");
        Assert.Contains("\"fra_Latn\"", models);
        Assert.Contains("\"default_source_lang\":\"eng_Latn\"", models.Replace(" ", ""));

        var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(M2M100ParityTests.Folder, "expected.json"))).RootElement;
        var sentences = expected.GetProperty("sentences").EnumerateArray().Select(s => s.GetString()!).ToArray();
        var ok = await service.TranslateAsync(new { text = sentences, source_lang = "eng_Latn", target_lang = "fra_Latn" });
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        var body = await TestService.JsonAsync(ok);
        Assert.Equal(expected.GetProperty("greedy_text").EnumerateArray().Select(t => t.GetString()),
            body["translations"]!.AsArray().Select(t => (string?)t!["text"]));

        var unknown = await service.TranslateAsync(new { text = sentences, target_lang = "fr" });
        Assert.Equal(HttpStatusCode.BadRequest, unknown.StatusCode);
        Assert.Contains("fra_Latn", await unknown.Content.ReadAsStringAsync());
        var missing = await service.TranslateAsync(new { text = sentences });
        Assert.Equal(HttpStatusCode.BadRequest, missing.StatusCode);
        Assert.Contains("target_lang", await missing.Content.ReadAsStringAsync());
    }
}
