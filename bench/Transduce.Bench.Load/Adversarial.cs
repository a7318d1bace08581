using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using static Transduce.Bench.Load.Program;

namespace Transduce.Bench.Load;

/// <summary>
/// <c>--adversarial</c>: the normal load (one test sentence per request, greedy) alone, then the same normal requests
/// with a share of maximal requests mixed in — the largest request the server admits (long sentences, a beam, as many
/// as its per-request cost budget allows). Reports latency of the normal requests in both, and what became of the
/// maximal ones. A fresh server per run; the pair is repeated <c>--repeats</c> times, alternating.
/// </summary>
internal static class Adversarial
{
    private const string Maximal = "maximal";

    private sealed record Row(int Repeat, bool Mixed, LoadResult Normal, LoadResult? Adversarial, IReadOnlyDictionary<string, double> Errors,
        double DecodesCancelled, long? PeakRss, bool CleanStop);

    public static async Task<int> RunAsync(Settings s)
    {
        if (s.Requests < 1 || s.Clients < 1 || s.SentencesPerRequest < 1 || s.Warmup < 0 || s.Repeats < 1
            || !(s.AdversarialShare is > 0 and < 1) || s.AdversarialBeam < 1 || s.AdversarialChars < 10 || s.Stress < 0)
            throw new ArgumentException("--requests, --clients, --sentences-per-request, --repeats, --adversarial-beam must be positive, --adversarial-share between 0 and 1, --adversarial-chars at least 10");
        var env = Locate(s);
        var sources = TestSources(env.DataDir);
        var rng = new Random(s.Seed);
        var (warmupRequests, measured) = DrawRequests(s, sources, rng);
        var normal = measured.Select(r => new LoadRequest(r)).ToArray();
        string longSentence = LongSentence(sources, s.AdversarialChars, rng);
        int maximalCount = (int)Math.Round(s.Requests * s.AdversarialShare / (1 - s.AdversarialShare));

        using var modelDir = await PrepareModel(s, env);
        var rows = new List<Row>();
        JsonElement? modelInfo = null;
        (int Sentences, long Cost, long Limit)? shape = null;
        string[] flags = ServerFlags(s, Configs[0]);
        for (int repeat = 1; repeat <= s.Repeats; repeat++)
        {
            foreach (bool mixed in new[] { false, true })
            {
                Console.Error.WriteLine($"[adversarial] repeat {repeat}: {(mixed ? "normal + maximal" : "normal only")}");
                using var server = await ServeProcess.StartAsync(env.Cli, modelDir.Path, flags, TimeSpan.FromSeconds(120));
                using var http = TranslateClient.Create(server.Url, s.Clients);
                modelInfo ??= await ModelInfo(http);
                if (warmupRequests.Length > 0)
                {
                    var warm = await LoadRun.RunAsync(http, warmupRequests, s.Clients, TimeSpan.FromSeconds(120));
                    if (warm.ErrorCount > 0 || warm.TimedOut)
                        throw new InvalidOperationException($"warm-up failed: {Errors(warm.Errors)}\n{server.Log}");
                }
                shape ??= await Calibrate(http, longSentence, s.AdversarialBeam);
                var maximal = new LoadRequest([.. Enumerable.Repeat(longSentence, shape.Value.Sentences)], s.AdversarialBeam, Maximal);
                var requests = mixed ? Mix(normal, maximal, maximalCount, new Random(s.Seed * 7919 + repeat)) : normal;

                var before = await Counters(http);
                IReadOnlyDictionary<string, LoadResult> results;
                using (new CpuStress(s.Stress)) results = await LoadRun.RunAsync(http, requests, s.Clients, s.TimeLimit);
                var after = await Counters(http);
                long? peak = server.PeakRssBytes();
                bool clean = await server.StopAsync(TimeSpan.FromSeconds(90)) && server.ExitCode == 0;
                var errors = after.Where(p => p.Key.StartsWith("error:", StringComparison.Ordinal))
                    .ToDictionary(p => p.Key[6..], p => p.Value - before.GetValueOrDefault(p.Key));
                var row = new Row(repeat, mixed, results[LoadRequest.Normal], results.GetValueOrDefault(Maximal), errors,
                    after.GetValueOrDefault("cancelled") - before.GetValueOrDefault("cancelled"), peak, clean);
                rows.Add(row);
                string maximalNote = row.Adversarial is { } a ? $", maximal {a.Succeeded} of {a.Sent} answered ({Errors(a.Errors)})" : "";
                Console.Error.WriteLine(string.Create(Inv,
                    $"[adversarial] normal p50 {row.Normal.Percentile(50):F1} ms, p99 {row.Normal.Percentile(99):F1} ms, normal errors {row.Normal.ErrorCount}{maximalNote}"));
            }
        }

        var md = new StringBuilder();
        md.AppendLine("## `transduce serve` under adversarial load").AppendLine();
        Header(md, s, env, modelInfo, modelDir);
        var (sentences, cost, limit) = shape!.Value;
        md.AppendLine(string.Create(Inv, $"- Normal load: {s.Requests:N0} requests of {s.SentencesPerRequest} `test.tsv` source sentence(s), greedy, from {s.Clients} closed-loop clients (seed {s.Seed}), after {s.Warmup} warm-up requests; the server with its defaults (`--max-request-cost`, `--max-inflight-cost`, `--max-batch-cost`, `--timeout-s` as shipped)."));
        md.AppendLine(string.Create(Inv, $"- Maximal request: {sentences} sentences of {longSentence.Length} characters (test sentences joined) with beam {s.AdversarialBeam}: {(limit > 0 ? $"estimated cost {cost:N0}, the most that fits the per-request budget of {limit:N0}" : "the most the server admits (its cost budget, or what it can finish within --timeout-s at its pace)")} (found by asking the server). Mixed runs add {maximalCount:N0} of them ({s.AdversarialShare:P0} of all requests) at seeded random positions among the same normal requests."));
        if (s.Stress > 0)
            md.AppendLine(string.Create(Inv, $"- Background load: {s.Stress} processes spinning a core each (`--stress {s.Stress}`, {Environment.ProcessorCount} cores here) during every measured run, started after the server's warm-up."));
        md.AppendLine("- Latency is client-side over the successful normal requests. Maximal requests are answered 200, or refused at once with 503 + Retry-After while the in-flight budget is taken (the clients do not retry). A fresh server per run.").AppendLine();
        md.AppendLine("| repeat | load | normal answered | normal errors | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | normal req/s | maximal answered / sent | maximal refused | 504 | server refusals | decodes stopped | time (s) | peak RSS (MiB) |");
        md.AppendLine("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|");
        foreach (var r in rows)
        {
            string maximalCells = r.Adversarial is { } a ? $"{a.Succeeded} / {a.Sent} | {Errors(a.Errors)}" : "– | –";
            md.AppendLine(string.Create(Inv,
                $"| {r.Repeat} | {(r.Mixed ? "normal + maximal" : "normal only")} | {r.Normal.Succeeded:N0} of {r.Normal.Planned:N0} | {Errors(r.Normal.Errors)} | {r.Normal.Percentile(50):F1} | {r.Normal.Percentile(95):F1} | {r.Normal.Percentile(99):F1} | {r.Normal.Percentile(100):F1} | {r.Normal.Succeeded / r.Normal.Elapsed.TotalSeconds:F1} | {maximalCells} | {TimedOut(r)} | {ServerErrors(r.Errors)} | {r.DecodesCancelled:0} | {r.Normal.Elapsed.TotalSeconds:F1} | {(r.PeakRss is long p ? (p / 1048576.0).ToString("F0", Inv) : "–")} |"));
        }
        md.AppendLine();
        foreach (bool mixed in new[] { false, true })
        {
            var set = rows.Where(r => r.Mixed == mixed).ToArray();
            md.AppendLine(string.Create(Inv,
                $"- {(mixed ? "With maximal requests" : "Normal only")}: p50 {Range(set.Select(r => r.Normal.Percentile(50)))} ms, p99 {Range(set.Select(r => r.Normal.Percentile(99)))} ms over {set.Length} run(s)."));
        }
        foreach (var r in rows.Where(r => !r.CleanStop))
            md.AppendLine().AppendLine($"Warning: the server of repeat {r.Repeat} ({(r.Mixed ? "mixed" : "normal")}) did not stop cleanly on SIGTERM.");
        Emit(md.ToString(), s.Out);

        bool ok = rows.All(r => r.Normal.ErrorCount == 0 && !r.Normal.TimedOut && r.CleanStop
            && (r.Adversarial is null || r.Adversarial.Errors.Keys.All(k => k == "http_503")));
        return ok ? 0 : 1;
    }

    /// <summary>Requests of either class answered 504 (admitted, then out of time).</summary>
    private static int TimedOut(Row r) => r.Normal.Errors.GetValueOrDefault("http_504") + (r.Adversarial?.Errors.GetValueOrDefault("http_504") ?? 0);

    private static string ServerErrors(IReadOnlyDictionary<string, double> errors)
    {
        var nonzero = errors.Where(p => p.Value > 0).OrderByDescending(p => p.Value).ToArray();
        return nonzero.Length == 0 ? "none" : string.Join(", ", nonzero.Select(p => string.Create(Inv, $"{p.Key} {p.Value:0}")));
    }

    private static string Range(IEnumerable<double> values)
    {
        var v = values.ToArray();
        return v.Length == 1 ? v[0].ToString("F1", Inv) : string.Create(Inv, $"{v.Min():F1}–{v.Max():F1}");
    }

    /// <summary>Test sentences joined with spaces up to <paramref name="chars"/> characters.</summary>
    private static string LongSentence(IReadOnlyList<string> sources, int chars, Random rng)
    {
        var sb = new StringBuilder();
        while (true)
        {
            string next = sources[rng.Next(sources.Count)];
            if (sb.Length + 1 + next.Length > chars) break;
            if (sb.Length > 0) sb.Append(' ');
            sb.Append(next);
        }
        return sb.ToString();
    }

    /// <summary>
    /// The largest number of <paramref name="sentence"/> copies the server admits in one request with
    /// <paramref name="beam"/>: asks for 64, reads the estimated cost and the limit from the 413/422 answer, scales down.
    /// </summary>
    private static async Task<(int Sentences, long Cost, long Limit)> Calibrate(HttpClient http, string sentence, int beam)
    {
        int count = 64;
        for (int attempt = 0; attempt < 8 && count > 0; attempt++)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(300));
            using var response = await http.PostAsJsonAsync("v1/translate", new { text = Enumerable.Repeat(sentence, count).ToArray(), beam }, timeout.Token);
            string body = await response.Content.ReadAsStringAsync(timeout.Token);
            if (response.StatusCode == HttpStatusCode.OK)
            {
                // Ask once more with one sentence too many to read the cost the server estimated.
                using var over = await http.PostAsJsonAsync("v1/translate", new { text = Enumerable.Repeat(sentence, count + 1).ToArray(), beam }, timeout.Token);
                using var doc = JsonDocument.Parse(await over.Content.ReadAsStringAsync(timeout.Token));
                bool costly = doc.RootElement.TryGetProperty("limit", out var name) && name.GetString() == "max_request_cost";
                long limit = costly ? doc.RootElement.GetProperty("limit_value").GetInt64() : 0;
                long perSentence = costly ? doc.RootElement.GetProperty("requested").GetInt64() / (count + 1) : 0;
                return (count, perSentence * count, limit);   // 0, 0 when the sentence limit or the time limit, not the cost, stopped it
            }
            bool tooLate = response.StatusCode == HttpStatusCode.ServiceUnavailable && body.Contains("\"timeout_s\"", StringComparison.Ordinal);
            if ((int)response.StatusCode is not (413 or 422) && !tooLate)
                throw new InvalidOperationException($"calibrating the maximal request: HTTP {(int)response.StatusCode}: {body}");
            using var problem = JsonDocument.Parse(body);
            long requested = problem.RootElement.GetProperty("requested").GetInt64();
            long limitValue = problem.RootElement.GetProperty("limit_value").GetInt64();
            // Over the cost budget: scale to it. Refused for time (503, the decoder could not finish it within --timeout-s
            // at its pace): scale to the three quarters of the time limit the server admits, with a margin.
            double fits = tooLate ? 0.75 * 0.8 * limitValue / requested : (double)limitValue / requested;
            count = Math.Min(count - 1, (int)(count * fits));
        }
        throw new InvalidOperationException($"no request of {sentence.Length}-character sentences with beam {beam} is admitted by the server");
    }

    /// <summary><paramref name="normal"/> with <paramref name="count"/> copies of <paramref name="maximal"/> at random positions.</summary>
    private static LoadRequest[] Mix(IReadOnlyList<LoadRequest> normal, LoadRequest maximal, int count, Random rng)
    {
        var mixed = new List<LoadRequest>(normal);
        for (int i = 0; i < count; i++) mixed.Insert(rng.Next(mixed.Count + 1), maximal);
        return [.. mixed];
    }

    /// <summary>The server's error counts by reason (keys <c>error:REASON</c>) and its cancelled decodes (<c>cancelled</c>).</summary>
    private static async Task<Dictionary<string, double>> Counters(HttpClient http)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        string text = await http.GetStringAsync("metrics", timeout.Token);
        var counters = new Dictionary<string, double>();
        foreach (string line in text.Split('\n'))
        {
            // "transduce_translate_errors_total{otel_scope_name=\"Transduce\",reason=\"busy\"} 3"
            if (line.StartsWith("transduce_translate_errors_total{", StringComparison.Ordinal) && line.Contains("reason=\"", StringComparison.Ordinal))
            {
                int start = line.IndexOf("reason=\"", StringComparison.Ordinal) + "reason=\"".Length;
                string reason = line[start..line.IndexOf('"', start)];
                counters["error:" + reason] = MetricValue(line, "transduce_translate_errors_total") ?? 0;
            }
            else if (MetricValue(line, "transduce_decodes_cancelled_total") is double c)
                counters["cancelled"] = counters.GetValueOrDefault("cancelled") + c;
        }
        return counters;
    }
}
