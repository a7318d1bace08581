using System.Text.Json.Nodes;
using Microsoft.Playwright;
using Transduce.Checkpoints;

namespace Transduce.Tests.Serving;

// The translation page as a person uses it: typing (no button), alternatives, copy, errors, a model without attention,
// a phone-sized screen. The screenshots it writes (bin/…/artifacts/page-*.png) are the ones in docs/images.
public sealed partial class ServeEndToEndTests
{
    [Fact]
    public async Task PageTranslatesAsYouTypeOffersAlternativesCopiesAndFitsAPhone()
    {
        string gru = GruCheckpoint();
        using var server = await WithServiceInChromium(["--model", "en-fr=" + fixture.CheckpointDirectory, "--model", "gru=" + gru, "--max-chars", "60"], async (url, browser) =>
        {
            await using var context = await browser.NewContextAsync(new BrowserNewContextOptions
            {
                ViewportSize = new ViewportSize { Width = 1000, Height = 720 },
                Permissions = ["clipboard-read", "clipboard-write"],
            });
            var page = await context.NewPageAsync();
            var consoleErrors = new List<string>();
            page.Console += (_, m) => { if (m.Type == "error" && !m.Text.Contains("status of 413")) consoleErrors.Add(m.Text); };
            int sent = 0, aborted = 0;
            page.Request += (_, r) => { if (r.Url.EndsWith("/v1/translate", StringComparison.Ordinal)) Interlocked.Increment(ref sent); };
            page.RequestFailed += (_, r) => { if (r.Url.EndsWith("/v1/translate", StringComparison.Ordinal)) Interlocked.Increment(ref aborted); };
            await page.GotoAsync(url);
            await Assertions.Expect(page.Locator("#direction")).ToHaveTextAsync("English → French");
            await Assertions.Expect(page.Locator("#source-label")).ToHaveTextAsync("English");
            await Assertions.Expect(page.Locator("#target-heading")).ToHaveTextAsync("French");
            await Assertions.Expect(page.Locator("#attention-note")).ToBeHiddenAsync();

            // Typed key by key, no button: one request once typing pauses; the paragraph comes back as two sentences.
            await page.Locator("#source").PressSequentiallyAsync("I'm home. Thank you!", new LocatorPressSequentiallyOptions { Delay = 15 });
            var sentences = page.Locator("#result .sentence");
            await Assertions.Expect(sentences).ToHaveTextAsync(["je suis chez moi .", "merci !"]);
            await Assertions.Expect(page.Locator("#result p")).ToHaveCountAsync(1);
            Assert.InRange(sent, 1, 3);   // 20 keys: a request per key would be 20 (a loaded machine may pause between keys)
            await Assertions.Expect(page.Locator("#status")).ToHaveTextAsync(new System.Text.RegularExpressions.Regex(
                @"^\d+ ms · en-fr · checkpoint [0-9a-f]{16}$"));

            // Side by side at 1000 px: the translation pane starts level with the text pane, to its right.
            var panes = await page.Locator(".pane").EvaluateAllAsync<double[][]>(
                "ps => ps.map(p => { const r = p.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })");
            Assert.Equal(panes[0][1], panes[1][1], 1);
            Assert.True(panes[1][0] >= panes[0][2], $"panes overlap: {panes[0][2]} > {panes[1][0]}");

            // An alternative from the n-best list replaces the sentence it belongs to.
            await sentences.Nth(0).ClickAsync();
            await Assertions.Expect(page.Locator("#alternatives")).ToBeVisibleAsync();
            var choices = page.Locator("#alternatives-list button");
            await Assertions.Expect(choices).ToHaveCountAsync(4);   // beam 4: four translations, best first
            Assert.Equal("je suis chez moi .", await choices.Nth(0).TextContentAsync());
            string alternative = (await choices.Nth(1).TextContentAsync())!;
            Assert.NotEqual("je suis chez moi .", alternative);
            await choices.Nth(1).ClickAsync();
            await Assertions.Expect(page.Locator("#alternatives")).ToBeHiddenAsync();
            await Assertions.Expect(sentences).ToHaveTextAsync([alternative, "merci !"]);

            // Copy: the button, then the shortcut, put the translation as shown (with the alternative) on the clipboard.
            await page.Locator("#copy").ClickAsync();
            Assert.Equal(alternative + " merci !", await page.EvaluateAsync<string>("navigator.clipboard.readText()"));
            await page.EvaluateAsync("navigator.clipboard.writeText('something else')");
            await page.Keyboard.PressAsync("Control+Shift+C");
            await Assertions.Expect(page.Locator("#copy")).ToHaveTextAsync("Copied");
            Assert.Equal(alternative + " merci !", await page.EvaluateAsync<string>("navigator.clipboard.readText()"));

            // Paragraphs keep their lines; a request overtaken by a newer one is cancelled and its answer never shown.
            int before = sent;
            await page.RouteAsync("**/v1/translate", async route =>
            {
                if (route.Request.PostData!.Contains("We won.", StringComparison.Ordinal)) await Task.Delay(1500);
                try { await route.ContinueAsync(); } catch (PlaywrightException) { /* the page aborted it */ }
            });
            await page.Locator("#source").FillAsync("We won.");
            await page.Locator("#source").PressAsync("Control+Enter");
            await Assertions.Expect(page.Locator("#status")).ToHaveTextAsync("Translating…");
            await page.Locator("#source").FillAsync("Go.\nI'm home. Thank you!");
            await page.Locator("#source").PressAsync("Control+Enter");
            await Assertions.Expect(page.Locator("#result p")).ToHaveTextAsync(["va !", "je suis chez moi . merci !"]);
            await Assertions.Expect(sentences).ToHaveCountAsync(3);
            await page.WaitForTimeoutAsync(1800);   // past the delayed answer: it must not replace the newer one
            await Assertions.Expect(page.Locator("#result p")).ToHaveTextAsync(["va !", "je suis chez moi . merci !"]);
            Assert.True(aborted >= 1, $"no request was cancelled ({sent - before} sent)");
            await page.UnrouteAllAsync(new PageUnrouteAllOptions { Behavior = UnrouteBehavior.IgnoreErrors });

            // An API error in plain words: the sentence over --max-chars is quoted with its length and the limit.
            string longSentence = "I'm home and I lost and he's calm and we won and thank you again";
            await page.Locator("#source").FillAsync(longSentence);
            await Assertions.Expect(page.Locator("#status.error")).ToHaveTextAsync(
                $"The sentence “{longSentence[..40]}…” is too long: {longSentence.Length} characters, and this service takes at most 60. Break it into shorter sentences.");

            // A model without cross-attention says why; the attention switch is off.
            await page.Locator("#source").FillAsync("Thank you!");
            await Assertions.Expect(sentences).ToHaveTextAsync(["merci !"]);
            await Assertions.Expect(page.Locator("#attention-view")).ToBeVisibleAsync();
            await page.Locator("#model-select").SelectOptionAsync("gru");
            await Assertions.Expect(page.Locator("#attention-note")).ToContainTextAsync("GRU encoder–decoder");
            await Assertions.Expect(page.Locator("#attention")).ToBeDisabledAsync();
            await Assertions.Expect(page.Locator("#status")).ToContainTextAsync(" · gru · checkpoint ");
            await Assertions.Expect(page.Locator("#attention-view")).ToBeHiddenAsync();
            await page.Locator("#model-select").SelectOptionAsync("en-fr");
            await Assertions.Expect(page.Locator("#attention-note")).ToBeHiddenAsync();
            await Assertions.Expect(page.Locator("#status")).ToContainTextAsync(" · en-fr · checkpoint ");
            await page.Locator("#source").FillAsync("I'm home. Thank you!\nHe's calm.");
            await Assertions.Expect(sentences).ToHaveCountAsync(3);
            await sentences.Nth(1).ClickAsync();
            await Screenshot(page, "page-desktop.png", fullPage: true);
            Assert.True(consoleErrors.Count == 0, string.Join("\n", consoleErrors));

            // A phone, 360 px wide: the panes stack and nothing scrolls sideways.
            await using var phone = await browser.NewContextAsync(new BrowserNewContextOptions
            {
                ViewportSize = new ViewportSize { Width = 360, Height = 740 }, IsMobile = true, HasTouch = true,
            });
            var small = await phone.NewPageAsync();
            await small.GotoAsync(url);
            await Assertions.Expect(small.Locator("#direction")).ToHaveTextAsync("English → French");
            await small.Locator("#source").FillAsync("I'm home. Thank you!\nHe's calm.");
            await Assertions.Expect(small.Locator("#result .sentence")).ToHaveCountAsync(3);
            await small.Locator("#result .sentence").Nth(0).TapAsync();
            await Assertions.Expect(small.Locator("#alternatives")).ToBeVisibleAsync();
            var width = await small.EvaluateAsync<int[]>("[document.documentElement.scrollWidth, document.documentElement.clientWidth]");
            Assert.True(width[0] <= 360 && width[0] <= width[1], $"the page scrolls sideways at 360 px: {width[0]} > {width[1]}");
            var stacked = await small.Locator(".pane").EvaluateAllAsync<double[]>("ps => ps.map(p => p.getBoundingClientRect().top)");
            Assert.True(stacked[1] > stacked[0] + 100, $"panes are not stacked: tops {stacked[0]} and {stacked[1]}");
            await Screenshot(small, "page-phone.png", fullPage: false);
        });
    }

    [Fact]
    public async Task PageShowsAnUnknownWordAsAMarkedPlaceholder()
    {
        using var server = await WithServiceInChromium(["--model", fixture.CheckpointDirectory], async (url, browser) =>
        {
            await using var context = await browser.NewContextAsync(new BrowserNewContextOptions { Permissions = ["clipboard-read", "clipboard-write"] });
            var page = await context.NewPageAsync();
            // The service's real answer with one word of the best translation (and of its first alternative) made <unk>,
            // as a model gives for a word outside its vocabulary.
            await page.RouteAsync("**/v1/translate", async route =>
            {
                var response = await route.FetchAsync();
                var body = JsonNode.Parse(await response.TextAsync())!;
                var first = body["translations"]![0]!;
                string withUnknown = first["text"]!.GetValue<string>().Replace("chez", "<unk>", StringComparison.Ordinal);
                first["text"] = withUnknown;
                first["n_best"]![0]!["text"] = withUnknown;
                await route.FulfillAsync(new RouteFulfillOptions { Response = response, Body = body.ToJsonString() });
            });
            await page.GotoAsync(url);
            await page.Locator("#source").FillAsync("I'm home.");
            var sentence = page.Locator("#result .sentence");
            await Assertions.Expect(sentence).ToHaveTextAsync(["je suis [?] moi ."]);
            await Assertions.Expect(sentence.Locator("mark.unk")).ToHaveCountAsync(1);
            await Assertions.Expect(sentence.Locator("mark.unk")).ToHaveAttributeAsync("title", new System.Text.RegularExpressions.Regex("could not translate"));
            await sentence.ClickAsync();
            await Assertions.Expect(page.Locator("#alternatives-list button mark.unk")).ToHaveCountAsync(1);
        });
    }

    [Fact]
    public async Task PageSaysTheServiceIsBusyAndRetriesAfterTheTimeItWasTold()
    {
        using var server = await WithServiceInChromium(["--model", fixture.CheckpointDirectory], async (url, browser) =>
        {
            var page = await browser.NewPageAsync();
            // The first answer is the service's 503 for a full in-flight budget (as TranslateEndpoint words it); the retry reaches the service.
            int calls = 0;
            await page.RouteAsync("**/v1/translate", async route =>
            {
                if (Interlocked.Increment(ref calls) > 1) { await route.ContinueAsync(); return; }
                await route.FulfillAsync(new RouteFulfillOptions
                {
                    Status = 503, ContentType = "application/problem+json", Headers = new Dictionary<string, string> { ["Retry-After"] = "1" },
                    Body = """{"title":"Busy","status":503,"detail":"the requests being translated already hold most of the in-flight budget","limit":"max_inflight_cost","limit_value":200000,"requested":9000}""",
                });
            });
            await page.GotoAsync(url);
            await page.Locator("#source").FillAsync("Thank you!");
            await Assertions.Expect(page.Locator("#status.error")).ToHaveTextAsync("The service is busy right now; trying again in 1 s.");
            await Assertions.Expect(page.Locator("#result .sentence")).ToHaveTextAsync(["merci !"]);
            await Assertions.Expect(page.Locator("#status")).Not.ToHaveClassAsync(new System.Text.RegularExpressions.Regex("error"));
            Assert.Equal(2, calls);
        });
    }

    [Fact]
    public async Task PageOffersAModelsTasks()
    {
        using var temp = new TempDir();
        string t5 = Transduce.Tests.Import.T5.T5ConvertTests.Assemble("t5-tiny", temp);   // with its SentencePiece model
        using var server = await WithServiceInChromium(["--model", "en-fr=" + fixture.CheckpointDirectory, "--model", "t5=" + t5], async (url, browser) =>
        {
            var page = await browser.NewPageAsync();
            await page.GotoAsync(url);
            await Assertions.Expect(page.Locator("#task")).ToBeHiddenAsync();   // the Transformer has no tasks
            await page.Locator("#model-select").SelectOptionAsync("t5");
            await Assertions.Expect(page.Locator("#task")).ToBeVisibleAsync();
            await Assertions.Expect(page.Locator("#task")).ToHaveValueAsync("translation_en_to_de");
            await page.Locator("#beam").SelectOptionAsync("1");
            var withTask = await page.RunAndWaitForResponseAsync(() => page.Locator("#source").FillAsync("The house is wonderful."), "**/v1/translate");
            Assert.Contains("\"task\":\"translation_en_to_de\"", withTask.Request.PostData, StringComparison.Ordinal);
            Assert.Equal(200, withTask.Status);
            await Assertions.Expect(page.Locator("#status")).ToContainTextAsync(" · t5 · checkpoint ");
            var without = await page.RunAndWaitForResponseAsync(() => page.Locator("#task").SelectOptionAsync(""), "**/v1/translate");
            Assert.DoesNotContain("\"task\"", without.Request.PostData, StringComparison.Ordinal);
            Assert.Equal(200, without.Status);
        });
    }

    [Fact]
    public async Task InteractiveApiPageWorksOfflineOverTheOpenApiDocument()
    {
        using var server = await WithServiceInChromium(["--model", fixture.CheckpointDirectory], async (url, browser) =>
        {
            var page = await browser.NewPageAsync();
            var elsewhere = new List<string>();
            var consoleErrors = new List<string>();
            page.Console += (_, m) => { if (m.Type == "error") consoleErrors.Add(m.Text); };
            page.Request += (_, r) => { if (!r.Url.StartsWith(url, StringComparison.Ordinal) && !r.Url.StartsWith("data:", StringComparison.Ordinal)) elsewhere.Add(r.Url); };
            await page.GotoAsync(url);
            await page.Locator("a[href='/scalar/']").ClickAsync();
            await Assertions.Expect(page.GetByText("Transduce translation service").First).ToBeVisibleAsync(new LocatorAssertionsToBeVisibleOptions { Timeout = 20_000 });
            await Assertions.Expect(page.GetByText("/v1/translate").First).ToBeVisibleAsync();
            // The translate operation shows its request body's fields, from the document's schema.
            await page.GetByText("Translate sentences").First.ClickAsync();
            await Assertions.Expect(page.GetByText("target_lang").First).ToBeVisibleAsync();
            Assert.True(elsewhere.Count == 0, "the API page fetched from elsewhere: " + string.Join(", ", elsewhere));
            Assert.True(consoleErrors.Count == 0, "the API page logged errors (CSP?): " + string.Join("\n", consoleErrors));
            var response = await page.Context.APIRequest.GetAsync(url + "/scalar/");
            Assert.Contains("script-src 'self' 'nonce-", response.Headers["content-security-policy"]);
        });
    }

    /// <summary>A GRU checkpoint (no cross-attention) beside the fixture's Transformer, trained briefly once.</summary>
    private string GruCheckpoint()
    {
        string directory = Path.Combine(fixture.Directory, "gru");
        lock (typeof(ServeEndToEndTests))
        {
            if (File.Exists(Path.Combine(directory, Checkpoint.WeightsFile))) return directory;
            var (model, data, pipeline, config) = TinyModels.Trained(epochs: 20, architecture: "gru");
            using (model)
            {
                new Checkpoint
                {
                    Model = model, ModelConfig = config, TextConfig = pipeline.Config,
                    SourceVocabulary = data.SourceVocabulary, TargetVocabulary = data.TargetVocabulary,
                    TrainingInfo = new Dictionary<string, string> { ["source_language"] = "English", ["target_language"] = "French" },
                }.Save(directory);
            }
        }
        return directory;
    }

    private static async Task Screenshot(IPage page, string name, bool fullPage)
    {
        string shot = Path.Combine(AppContext.BaseDirectory, "artifacts", name);
        Directory.CreateDirectory(Path.GetDirectoryName(shot)!);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = shot, FullPage = fullPage });
        Assert.True(new FileInfo(shot).Length > 1000);
    }
}
