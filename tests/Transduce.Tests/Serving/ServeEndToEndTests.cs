using System.Diagnostics;
using System.Net;
using System.Text.RegularExpressions;
using Microsoft.Playwright;

namespace Transduce.Tests.Serving;

/// <summary>
/// Starts the real <c>transduce serve</c> on a free loopback port and uses its page in headless Chromium, as a person
/// would: type a sentence, click Translate, read the translation. Needs Debian's <c>chromium</c> package.
/// </summary>
[Collection(ServingCollection.Name)]
public sealed partial class ServeEndToEndTests(ServingFixture fixture)
{
    private const string ChromiumPath = "/usr/bin/chromium";

    /// <summary>Debian's Chromium, headless, as every page test runs it.</summary>
    private static Task<IBrowser> LaunchChromium(IPlaywright playwright) => playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
    {
        ExecutablePath = ChromiumPath, Headless = true, Timeout = 30_000,
        Args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });

    [Fact]
    public async Task PageTranslatesASentenceInChromiumAndServerStopsCleanly()
    {
        // Two names for one checkpoint directory: the page offers a choice of model (the weights are loaded once).
        using var server = await WithServiceInChromium(["--model", "en-fr=" + fixture.CheckpointDirectory, "--model", "copy=" + fixture.CheckpointDirectory], async (url, browser) =>
        {
            using (var http = new HttpClient { BaseAddress = new Uri(url) })
                Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);

            var page = await browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 900, Height = 600 } });
            var consoleErrors = new List<string>();
            page.Console += (_, m) => { if (m.Type == "error") consoleErrors.Add(m.Text); };
            await page.GotoAsync(url);

            await Assertions.Expect(page.Locator("#direction")).ToHaveTextAsync("English → French");
            await Assertions.Expect(page.Locator("#model-select option")).ToHaveCountAsync(2);
            await Assertions.Expect(page.Locator("#model-label")).ToBeVisibleAsync();
            await Assertions.Expect(page.Locator("#key-form")).ToBeHiddenAsync();   // no key needed here
            await page.Locator("#model-select").SelectOptionAsync("copy");
            await page.Locator("#source").FillAsync("I'm home.\nThank you!");
            await page.Locator("#translate").ClickAsync();
            var results = page.Locator("#result .sentence");
            await Assertions.Expect(results).ToHaveCountAsync(2);
            Assert.Equal(["je suis chez moi .", "merci !"], await results.AllTextContentsAsync());
            Assert.Contains("transformer", await page.Locator("#model").TextContentAsync());
            // The cross-attention of the first sentence is drawn in the page: a canvas of target × source cells.
            await Assertions.Expect(page.Locator("#attention-view")).ToBeVisibleAsync();
            var size = await page.Locator("#heatmap").EvaluateAsync<int[]>("c => [c.width, c.height]");
            Assert.True(size[0] > 4 * 34 && size[1] > 5 * 34, $"heatmap canvas is {size[0]}×{size[1]}");
            await results.Nth(1).ClickAsync();
            await Assertions.Expect(page.Locator("#heatmap")).ToHaveAttributeAsync("aria-label", "cross-attention of: merci !");

            await Screenshot(page, "serve-page.png", fullPage: true);
            Assert.True(consoleErrors.Count == 0, string.Join("\n", consoleErrors));
        });
        Assert.True(server.WaitForExit(20_000), "serve did not stop within 20 s of SIGTERM");
        Assert.Equal(0, server.ExitCode);
    }

    [Fact]
    public async Task PageOffersAMultilingualModelsLanguages()
    {
        string nllb = Transduce.Tests.Import.M2M100.M2M100ParityTests.Folder;
        var expected = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(nllb, "expected.json"))).RootElement;
        using var server = await WithServiceInChromium(["--model", "en-fr=" + fixture.CheckpointDirectory, "--model", "nllb=" + nllb], async (url, browser) =>
        {
            var page = await browser.NewPageAsync();
            await page.GotoAsync(url);
            await Assertions.Expect(page.Locator("#model-select option")).ToHaveCountAsync(2);
            await Assertions.Expect(page.Locator("#target-lang")).ToBeHiddenAsync();   // the first model has no languages
            await page.Locator("#model-select").SelectOptionAsync("nllb");
            await Assertions.Expect(page.Locator("#target-lang")).ToBeVisibleAsync();
            await Assertions.Expect(page.Locator("#source-lang")).ToHaveValueAsync("eng_Latn");
            await Assertions.Expect(page.Locator("#target-lang option")).ToHaveCountAsync(4);
            await page.Locator("#target-lang").SelectOptionAsync("fra_Latn");
            await page.Locator("#beam").SelectOptionAsync("1");
            await page.Locator("#source").FillAsync(expected.GetProperty("sentences")[0].GetString()!);
            await page.Locator("#translate").ClickAsync();
            await Assertions.Expect(page.Locator("#result .sentence")).ToHaveTextAsync([expected.GetProperty("greedy_text")[0].GetString()!]);
            // The pickers name the languages; swapping turns the direction round and the translation into the new text.
            await Assertions.Expect(page.Locator("#target-lang option[value='fra_Latn']")).ToHaveTextAsync("French (fra_Latn)");
            await Assertions.Expect(page.Locator("#swap")).ToBeVisibleAsync();
            await page.Keyboard.PressAsync("Control+Shift+S");
            await Assertions.Expect(page.Locator("#source-lang")).ToHaveValueAsync("fra_Latn");
            await Assertions.Expect(page.Locator("#target-lang")).ToHaveValueAsync("eng_Latn");
            await Assertions.Expect(page.Locator("#source")).ToHaveValueAsync(expected.GetProperty("greedy_text")[0].GetString()!);
            await page.Locator("#model-select").SelectOptionAsync("en-fr");
            await Assertions.Expect(page.Locator("#swap")).ToBeHiddenAsync();   // one direction: nothing to swap
        });
        Assert.True(server.WaitForExit(20_000), "serve did not stop within 20 s of SIGTERM");
    }

    [Fact]
    public async Task PageAsksForTheApiKeyWhenTheServiceNeedsOne()
    {
        string keyFile = Path.Combine(fixture.Directory, "page.key");
        File.WriteAllText(keyFile, "page-key-0123456789abcdef\n");
        using var server = await WithServiceInChromium(["--model", fixture.CheckpointDirectory, "--api-key-file", keyFile], async (url, browser) =>
        {
            var page = await browser.NewPageAsync();
            await page.GotoAsync(url);
            await Assertions.Expect(page.Locator("#key-form")).ToBeVisibleAsync();
            await Assertions.Expect(page.Locator("#direction")).ToHaveTextAsync("this service needs an API key");
            await page.Locator("#api-key").FillAsync("page-key-0123456789abcdef");
            await page.Locator("#key-save").ClickAsync();
            await Assertions.Expect(page.Locator("#direction")).ToHaveTextAsync("English → French");
            await Assertions.Expect(page.Locator("#model-select")).ToBeHiddenAsync();   // one model: no choice to make
            await Assertions.Expect(page.Locator("#model-label")).ToBeHiddenAsync();
            await Assertions.Expect(page.Locator("#key-form")).ToBeHiddenAsync();
            await page.Locator("#source").FillAsync("Thank you!");
            await page.Locator("#translate").ClickAsync();
            await Assertions.Expect(page.Locator("#result .sentence")).ToHaveTextAsync(["merci !"]);
        });
    }

    /// <summary>
    /// Starts <c>transduce serve</c> with <paramref name="serveArguments"/> and headless Chromium, and runs <paramref name="use"/>
    /// with the service's address; stops the service (SIGTERM) whatever happens and returns its process.
    /// </summary>
    private async Task<Process> WithServiceInChromium(string[] serveArguments, Func<string, IBrowser, Task> use)
    {
        Assert.True(File.Exists(ChromiumPath), $"{ChromiumPath} is missing: install Debian's 'chromium' package (listed in .ci/apt-packages)");
        var server = StartServer(out string url, serveArguments);
        try
        {
            using var playwright = await Playwright.CreateAsync();
            await using var browser = await LaunchChromium(playwright);
            await use(url, browser);
        }
        finally
        {
            Terminate(server);
        }
        return server;
    }

    private Process StartServer(out string url, params string[] modelArguments)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Transduce.Cli.dll"));
        foreach (var a in new[] { "serve", "--urls", "http://127.0.0.1:0", "--threads", "1" }.Concat(modelArguments))
            psi.ArgumentList.Add(a);
        var process = Process.Start(psi)!;
        var stderr = new System.Text.StringBuilder();
        process.ErrorDataReceived += (_, e) => { lock (stderr) stderr.AppendLine(e.Data); };
        process.BeginErrorReadLine();
        // The server prints "serving … on http://127.0.0.1:PORT" once it listens (port 0: the OS picked a free one).
        var output = new System.Text.StringBuilder();
        string? found = null;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (found is null && DateTime.UtcNow < deadline)
        {
            var read = process.StandardOutput.ReadLineAsync();
            if (!read.Wait(deadline - DateTime.UtcNow) || read.Result is not { } text) break;
            output.AppendLine(text);
            if (ServingLine().Match(text) is { Success: true } m) found = m.Groups[1].Value;
        }
        if (found is null)
        {
            Terminate(process);
            lock (stderr) throw new InvalidOperationException($"serve did not start:\n{output}\n{stderr}");
        }
        url = found;
        // The capability report comes first, once the models are loaded.
        Assert.Contains(output.ToString().Split('\n'), l => l.StartsWith("managed row step", StringComparison.Ordinal));
        _ = process.StandardOutput.ReadToEndAsync();   // keep the pipe drained
        return process;
    }

    /// <summary>Asks the server to stop as Ctrl+C or a service manager would (SIGTERM); kills it if it ignores that.</summary>
    private static void Terminate(Process process)
    {
        if (process.HasExited) return;
        using (var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-TERM", process.Id.ToString() }, UseShellExecute = false })!)
            kill.WaitForExit();
        if (!process.WaitForExit(20_000)) process.Kill();
    }

    [GeneratedRegex(@" on (http://127\.0\.0\.1:\d+)$")]
    private static partial Regex ServingLine();
}
