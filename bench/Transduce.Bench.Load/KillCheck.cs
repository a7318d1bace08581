using System.Collections.Concurrent;
using System.Diagnostics;

namespace Transduce.Bench.Load;

/// <summary>Settings of a <see cref="KillCheck"/>.</summary>
public sealed record KillCheckOptions
{
    /// <summary>Concurrent clients, each sending one request after another.</summary>
    public int Clients { get; init; } = 16;

    /// <summary>How long the clients send before the server gets the signal.</summary>
    public TimeSpan LoadBeforeSignal { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>The signal: <see cref="ServeProcess.SigKill"/> or <see cref="ServeProcess.SigTerm"/>.</summary>
    public int Signal { get; init; } = ServeProcess.SigKill;

    /// <summary>
    /// Time after the signal by which every request must have an outcome; requests still running then are cancelled
    /// and counted as hung.
    /// </summary>
    public TimeSpan HangTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Requests sent (and required to succeed) before the load starts, so the model is warm.</summary>
    public int WarmupRequests { get; init; } = 8;
}

/// <summary>Counts of a <see cref="KillCheck"/> run.</summary>
public sealed record KillCheckResult
{
    /// <summary>The signal sent.</summary>
    public required int Signal { get; init; }

    /// <summary>Clients.</summary>
    public required int Clients { get; init; }

    /// <summary>Requests begun during the check (warm-up excluded), counted when begun, not from their outcomes.</summary>
    public required int Started { get; init; }

    /// <summary>Requests answered 200 with a translation.</summary>
    public required int Answered { get; init; }

    /// <summary>Requests that ended in an error the client could see, by kind (see <see cref="RequestOutcome.Kind"/>).</summary>
    public required IReadOnlyDictionary<string, int> Errors { get; init; }

    /// <summary>Requests with no outcome <see cref="KillCheckOptions.HangTimeout"/> after the signal.</summary>
    public required int Hung { get; init; }

    /// <summary>Requests in flight (sent, not yet answered) at the moment of the signal.</summary>
    public required int InFlightAtSignal { get; init; }

    /// <summary>Requests sent before the signal.</summary>
    public required int StartedBeforeSignal { get; init; }

    /// <summary>Requests sent before the signal and answered 200.</summary>
    public required int AnsweredBeforeSignal { get; init; }

    /// <summary>Requests sent before the signal that failed, by kind.</summary>
    public required IReadOnlyDictionary<string, int> ErrorsBeforeSignal { get; init; }

    /// <summary>Whether the server process ended within the hang timeout, and its exit code then.</summary>
    public required int? ExitCode { get; init; }

    /// <summary>Time from the signal until the server process ended (null if it did not).</summary>
    public required TimeSpan? ExitAfterSignal { get; init; }

    /// <summary>Time from the signal until the last request had its outcome.</summary>
    public required TimeSpan LastOutcomeAfterSignal { get; init; }

    /// <summary>All errors.</summary>
    public int ErrorCount => Errors.Values.Sum();

    /// <summary>
    /// Requests sent before the signal that failed although the connection was not refused: with SIGTERM these are
    /// requests the server may have accepted and then dropped (must be 0). A refused connection means the server
    /// never accepted the request (the HTTP client retries a request whose idle kept-alive connection the server closed
    /// during shutdown on a new connection, which is then refused).
    /// </summary>
    public int DroppedBeforeSignal => ErrorsBeforeSignal.Where(p => p.Key != RequestOutcome.Refused).Sum(p => p.Value);

    /// <summary>Every request ended in a translation or a client-visible error (no hung request) and the counts add up.</summary>
    public bool NoneLost => Hung == 0 && Answered + ErrorCount + Hung == Started;

    /// <summary>
    /// The check passed: nothing lost; with SIGTERM also every request the server accepted before the signal was
    /// answered 200 and the server exited 0.
    /// </summary>
    public bool Passed => NoneLost && (Signal != ServeProcess.SigTerm || (DroppedBeforeSignal == 0 && ExitCode == 0));

    /// <summary>The signal's name.</summary>
    public string SignalName => Signal switch { ServeProcess.SigKill => "SIGKILL", ServeProcess.SigTerm => "SIGTERM", _ => $"signal {Signal}" };
}

/// <summary>
/// Kill-mid-load check: clients send translation requests continuously; after a while the server gets a signal
/// (SIGKILL: no handler runs; SIGTERM: graceful stop). Every request must end in a 200 translation or an error the
/// client sees (refused or reset connection, 5xx) — none may hang. Each client stops after its first failed request,
/// so every client ends with exactly one error once the server is gone.
/// </summary>
public static class KillCheck
{
    /// <summary>Runs the check against <paramref name="server"/>, which it ends (the process is gone afterwards).</summary>
    public static async Task<KillCheckResult> RunAsync(ServeProcess server, IReadOnlyList<string> sentences, KillCheckOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Clients, 1);
        ArgumentOutOfRangeException.ThrowIfZero(sentences.Count);
        using var http = TranslateClient.Create(server.Url, options.Clients);

        for (int i = 0; i < options.WarmupRequests; i++)
        {
            using var warm = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var outcome = await TranslateClient.TranslateAsync(http, [sentences[i % sentences.Count]], warm.Token);
            if (!outcome.IsOk) throw new InvalidOperationException($"warm-up request failed: {outcome.Kind} {outcome.Detail}\n{server.Log}");
        }

        long signalAt = long.MaxValue;                    // Stopwatch timestamp of the signal
        int next = -1;
        var inFlight = new ConcurrentDictionary<int, byte>();
        var records = new ConcurrentBag<(long Start, RequestOutcome Outcome)>();
        long lastOutcome = 0;
        using var hang = new CancellationTokenSource();   // fired at the hang deadline: cancels what is still running

        var clients = Enumerable.Range(0, options.Clients).Select(_ => Task.Run(async () =>
        {
            while (!hang.IsCancellationRequested)
            {
                int id = Interlocked.Increment(ref next);
                string sentence = sentences[id % sentences.Count];
                long start = Stopwatch.GetTimestamp();
                inFlight[id] = 0;
                var outcome = await TranslateClient.TranslateAsync(http, [sentence], hang.Token);
                inFlight.TryRemove(id, out byte _);
                long end = Stopwatch.GetTimestamp();
                InterlockedMax(ref lastOutcome, end);
                records.Add((start, outcome));
                if (!outcome.IsOk) break;
            }
        })).ToArray();

        await Task.Delay(options.LoadBeforeSignal);
        int inFlightAtSignal = inFlight.Count;
        Volatile.Write(ref signalAt, Stopwatch.GetTimestamp());
        server.Signal(options.Signal);
        long signalled = Volatile.Read(ref signalAt);

        var all = Task.WhenAll(clients);
        var deadline = Task.Delay(options.HangTimeout);
        var exit = server.WaitForExitAsync(options.HangTimeout);
        bool exited = await exit;
        TimeSpan? exitAfter = exited ? Stopwatch.GetElapsedTime(signalled) : null;
        if (await Task.WhenAny(all, deadline) != all)
        {
            hang.Cancel();
            await all;
        }
        if (!exited) exited = await server.WaitForExitAsync(TimeSpan.Zero);

        var errors = new Dictionary<string, int>();
        var errorsBefore = new Dictionary<string, int>();
        int answered = 0, hung = 0, startedBefore = 0, answeredBefore = 0;
        foreach (var (start, outcome) in records)
        {
            bool before = start < signalled;
            if (before) startedBefore++;
            if (outcome.IsOk)
            {
                answered++;
                if (before) answeredBefore++;
            }
            else if (outcome.Kind == RequestOutcome.Cancelled) hung++;
            else
            {
                errors[outcome.Kind] = errors.GetValueOrDefault(outcome.Kind) + 1;
                if (before) errorsBefore[outcome.Kind] = errorsBefore.GetValueOrDefault(outcome.Kind) + 1;
            }
        }
        return new KillCheckResult
        {
            Signal = options.Signal, Clients = options.Clients, Started = Volatile.Read(ref next) + 1, Answered = answered, Errors = errors, Hung = hung,
            InFlightAtSignal = inFlightAtSignal, StartedBeforeSignal = startedBefore, AnsweredBeforeSignal = answeredBefore,
            ErrorsBeforeSignal = errorsBefore, ExitCode = exited ? server.ExitCode : null, ExitAfterSignal = exitAfter,
            LastOutcomeAfterSignal = Stopwatch.GetElapsedTime(signalled, Math.Max(signalled, Interlocked.Read(ref lastOutcome))),
        };
    }

    private static void InterlockedMax(ref long target, long value)
    {
        long seen = Interlocked.Read(ref target);
        while (value > seen)
        {
            long previous = Interlocked.CompareExchange(ref target, value, seen);
            if (previous == seen) return;
            seen = previous;
        }
    }
}
