using System.Diagnostics;

namespace Transduce.Bench.Load;

/// <summary>What one bounded load run measured (client side).</summary>
public sealed record LoadResult
{
    /// <summary>Requests the run was asked to send.</summary>
    public required int Planned { get; init; }

    /// <summary>Requests sent (fewer than planned only if the time limit struck).</summary>
    public required int Sent { get; init; }

    /// <summary>Requests answered 200 with a translation.</summary>
    public required int Succeeded { get; init; }

    /// <summary>Requests that failed (non-200, broken connection, bad body), by kind.</summary>
    public required IReadOnlyDictionary<string, int> Errors { get; init; }

    /// <summary>Requests still running when the time limit struck.</summary>
    public required int Unfinished { get; init; }

    /// <summary>Sentences per request.</summary>
    public required int SentencesPerRequest { get; init; }

    /// <summary>Wall time from the first request until the last one ended.</summary>
    public required TimeSpan Elapsed { get; init; }

    /// <summary>Latencies of the successful requests in milliseconds, ascending.</summary>
    public required double[] LatenciesMs { get; init; }

    /// <summary>True if the time limit ended the run before every request was sent and answered.</summary>
    public bool TimedOut => Unfinished > 0 || Sent < Planned;

    /// <summary>All failed requests.</summary>
    public int ErrorCount => Errors.Values.Sum();

    /// <summary>Successful requests per second.</summary>
    public double RequestsPerSecond => Succeeded / Elapsed.TotalSeconds;

    /// <summary>Successfully translated sentences per second.</summary>
    public double SentencesPerSecond => Succeeded * (double)SentencesPerRequest / Elapsed.TotalSeconds;

    /// <summary>The <paramref name="percent"/>th percentile (nearest rank) of <see cref="LatenciesMs"/>, NaN if empty.</summary>
    public double Percentile(double percent)
    {
        if (LatenciesMs.Length == 0) return double.NaN;
        int rank = (int)Math.Ceiling(percent / 100 * LatenciesMs.Length);
        return LatenciesMs[Math.Clamp(rank - 1, 0, LatenciesMs.Length - 1)];
    }
}

/// <summary>One request of a load run.</summary>
/// <param name="Sentences">The sentences to translate.</param>
/// <param name="Beam">The beam asked for; null leaves it to the server.</param>
/// <param name="Class">Which group the request is reported in (e.g. <c>normal</c>, <c>adversarial</c>).</param>
public sealed record LoadRequest(string[] Sentences, int? Beam = null, string Class = LoadRequest.Normal)
{
    /// <summary>The class of ordinary requests.</summary>
    public const string Normal = "normal";
}

/// <summary>A bounded closed-loop load: <c>clients</c> concurrent clients work through a fixed list of requests.</summary>
public static class LoadRun
{
    /// <summary>
    /// Sends every request in <paramref name="requests"/> (each a list of sentences) from <paramref name="clients"/>
    /// concurrent clients, each sending its next request as soon as its previous one is answered; stops early when
    /// <paramref name="timeLimit"/> has passed (requests then still running are cancelled and counted unfinished).
    /// </summary>
    public static async Task<LoadResult> RunAsync(HttpClient http, IReadOnlyList<string[]> requests, int clients, TimeSpan timeLimit) =>
        (await RunAsync(http, requests.Select(r => new LoadRequest(r)).ToArray(), clients, timeLimit))[LoadRequest.Normal];

    /// <summary>
    /// As <see cref="RunAsync(HttpClient, IReadOnlyList{string[]}, int, TimeSpan)"/> for requests of several classes,
    /// mixed in the order given; returns one result per class (the elapsed time is the whole run's).
    /// </summary>
    public static async Task<IReadOnlyDictionary<string, LoadResult>> RunAsync(HttpClient http, IReadOnlyList<LoadRequest> requests, int clients, TimeSpan timeLimit)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(clients, 1);
        var outcomes = new RequestOutcome?[requests.Count];
        var latencies = new double[requests.Count];
        int next = -1;
        using var limit = new CancellationTokenSource(timeLimit);
        var clock = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
        {
            int i;
            while (!limit.IsCancellationRequested && (i = Interlocked.Increment(ref next)) < requests.Count)
            {
                long start = Stopwatch.GetTimestamp();
                var outcome = await TranslateClient.TranslateAsync(http, requests[i].Sentences, limit.Token, requests[i].Beam);
                latencies[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                outcomes[i] = outcome;
            }
        })).ToArray();
        await Task.WhenAll(workers);
        var elapsed = clock.Elapsed;

        var results = new Dictionary<string, LoadResult>();
        foreach (string kind in requests.Select(r => r.Class).Append(LoadRequest.Normal).Distinct())
        {
            var errors = new Dictionary<string, int>();
            int planned = 0, sent = 0, ok = 0, unfinished = 0;
            var okLatencies = new List<double>(requests.Count);
            for (int i = 0; i < requests.Count; i++)
            {
                if (requests[i].Class != kind) continue;
                planned++;
                if (outcomes[i] is not { } o) continue;
                sent++;
                if (o.IsOk)
                {
                    ok++;
                    okLatencies.Add(latencies[i]);
                }
                else if (o.Kind == RequestOutcome.Cancelled) unfinished++;
                else errors[o.Kind] = errors.GetValueOrDefault(o.Kind) + 1;
            }
            okLatencies.Sort();
            var first = requests.FirstOrDefault(r => r.Class == kind);
            results[kind] = new LoadResult
            {
                Planned = planned, Sent = sent, Succeeded = ok, Errors = errors, Unfinished = unfinished,
                SentencesPerRequest = first?.Sentences.Length ?? 0, Elapsed = elapsed, LatenciesMs = [.. okLatencies],
            };
        }
        return results;
    }
}
