using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Transduce.Serving;

/// <summary>
/// The service's counters, histograms and gauges on <see cref="System.Diagnostics.Metrics"/>: a <see cref="Meter"/> named
/// <see cref="MeterName"/> made by the host's <see cref="IMeterFactory"/> (so <c>dotnet-counters monitor --counters
/// Transduce</c>, OpenTelemetry and any .NET APM see them), and the process's runtime figures (CPU, memory, GC, thread
/// pool) on a second meter, <see cref="RuntimeMeterName"/>. Instrument names are chosen so that the Prometheus exporter
/// (<c>/metrics</c>) writes the names the service has always had: <c>transduce.http.request.duration</c> in seconds is
/// <c>transduce_http_request_duration_seconds</c>, a counter gets <c>_total</c>. All members are thread-safe.
/// </summary>
internal sealed class ServingMetrics
{
    /// <summary>The meter of the service's own instruments.</summary>
    public const string MeterName = "Transduce";

    /// <summary>The meter of the process and runtime gauges <c>/metrics</c> has always carried (<c>process_*</c>, <c>dotnet_*</c>).</summary>
    public const string RuntimeMeterName = "Transduce.Runtime";

    /// <summary>The activity source of the service's traces: one <c>transduce.decode</c> activity per decoder call.</summary>
    public static readonly ActivitySource Activities = new(MeterName);

    /// <summary>Upper bounds (seconds) of the request-latency histogram buckets.</summary>
    public static readonly double[] LatencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

    /// <summary>Upper bounds (sentences) of the batch-size histogram buckets.</summary>
    public static readonly double[] BatchBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256];

    private static readonly double s_startUnixSeconds = StartTime();

    private readonly Counter<long> requests, errors, sentences, sourceTokens, targetTokens, dropped, decodesCancelled;
    private readonly Histogram<double> latency, decodeSeconds;
    private readonly Histogram<int> batchSizes;
    private readonly object gate = new();
    private readonly List<(string Model, Func<long> Queued, Func<long> Decoding)> models = [];
    private Func<(long InFlight, long Limit)> budget = () => (0, 0);
    private long sentencesTotal, droppedTotal, cancelledTotal, batchCount;
    private int batchMax;

    /// <summary>Creates the instruments on meters made by <paramref name="meters"/> (disposed with it).</summary>
    public ServingMetrics(IMeterFactory meters)
    {
        var meter = meters.Create(MeterName);
        requests = meter.CreateCounter<long>("transduce.http.requests", description: "HTTP requests by endpoint and status code.");
        latency = meter.CreateHistogram("transduce.http.request.duration", "s", "HTTP request latency by endpoint.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        errors = meter.CreateCounter<long>("transduce.translate.errors", description: "Translation requests that failed, by reason.");
        sentences = meter.CreateCounter<long>("transduce.sentences.translated", description: "Sentences translated.");
        sourceTokens = meter.CreateCounter<long>("transduce.source.tokens", description: "Source tokens translated (as the model's tokenizer splits them).");
        targetTokens = meter.CreateCounter<long>("transduce.target.tokens", description: "Tokens of the best translations produced.");
        dropped = meter.CreateCounter<long>("transduce.requests.dropped", description: "Requests dropped unfinished because the client left or the time ran out.");
        decodesCancelled = meter.CreateCounter<long>("transduce.decodes.cancelled", description: "Decoder calls stopped mid-way: every request in them was cancelled, or the service stopped.");
        batchSizes = meter.CreateHistogram("transduce.batch.size", null, "Sentences per decoder call.",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [.. BatchBuckets.Select(b => (int)b)] });
        decodeSeconds = meter.CreateHistogram("transduce.decode.duration", "s", "Wall time of one decoder call.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        meter.CreateObservableGauge("transduce.queue.sentences", () => PerModel(m => m.Queued()), description: "Sentences waiting for the decoder.");
        meter.CreateObservableGauge("transduce.decoding.sentences", () => PerModel(m => m.Decoding()), description: "Sentences in the decoder call running now.");
        meter.CreateObservableGauge("transduce.inflight.cost", () => budget().InFlight, description: "Estimated cost of the admitted requests not yet answered.");
        meter.CreateObservableGauge("transduce.inflight.cost.limit", () => budget().Limit, description: "The in-flight cost budget (--max-inflight-cost).");
        RuntimeInstruments(meters.Create(RuntimeMeterName));
    }

    /// <summary>Counts one finished HTTP request and its latency.</summary>
    public void ObserveRequest(string endpoint, int status, double seconds)
    {
        var tag = new KeyValuePair<string, object?>("endpoint", endpoint);
        requests.Add(1, tag, new("status", status));
        latency.Record(seconds, tag);
    }

    /// <summary>Counts one failed translation request by <paramref name="reason"/> (e.g. <c>invalid</c>, <c>queue_full</c>).</summary>
    public void CountError(string reason) => errors.Add(1, new KeyValuePair<string, object?>("reason", reason));

    /// <summary>Adds a served model with the sources of its queue and decoder gauges.</summary>
    public void RegisterModel(string model, Func<long> queuedSentences, Func<long> decodingSentences)
    {
        lock (gate) models.Add((model, queuedSentences, decodingSentences));
        // Each model's counters are exported from the start, at 0, as they always were: a rate needs the series to exist.
        var tag = Tag(model);
        foreach (var counter in new[] { sentences, sourceTokens, targetTokens, dropped, decodesCancelled }) counter.Add(0, tag);
    }

    /// <summary>Sets the source of the in-flight cost gauge.</summary>
    public void SetBudgetGauge(Func<(long InFlight, long Limit)> source) => budget = source;

    /// <summary>Records one decoder call of <paramref name="size"/> sentences.</summary>
    public void ObserveBatch(string model, int size)
    {
        batchSizes.Record(size, Tag(model));
        lock (gate)
        {
            batchCount++;
            batchMax = Math.Max(batchMax, size);
        }
    }

    /// <summary>Records the wall time of one decoder call.</summary>
    public void ObserveDecode(string model, double seconds) => decodeSeconds.Record(seconds, Tag(model));

    /// <summary>Counts translated sentences and their source and (best) target tokens.</summary>
    public void CountTranslated(string model, int sentenceCount, long source, long target)
    {
        var tag = Tag(model);
        sentences.Add(sentenceCount, tag);
        sourceTokens.Add(source, tag);
        targetTokens.Add(target, tag);
        Interlocked.Add(ref sentencesTotal, sentenceCount);
    }

    /// <summary>Counts requests dropped unfinished because their client left or their time ran out.</summary>
    public void CountDropped(string model, int requestCount)
    {
        dropped.Add(requestCount, Tag(model));
        Interlocked.Add(ref droppedTotal, requestCount);
    }

    /// <summary>Counts one decoder call stopped mid-way (every request in it was cancelled, or the service stopped).</summary>
    public void CountDecodeCancelled(string model)
    {
        decodesCancelled.Add(1, Tag(model));
        Interlocked.Increment(ref cancelledTotal);
    }

    /// <summary>Sentences translated so far, over every model.</summary>
    public long SentencesTranslated => Interlocked.Read(ref sentencesTotal);

    /// <summary>Requests dropped unfinished so far, over every model.</summary>
    public long RequestsDropped => Interlocked.Read(ref droppedTotal);

    /// <summary>Decoder calls stopped mid-way so far, over every model.</summary>
    public long DecodesCancelled => Interlocked.Read(ref cancelledTotal);

    /// <summary>Decoder calls so far and the largest one, over every model.</summary>
    public (long Count, double Max) Batches
    {
        get { lock (gate) return (batchCount, batchMax); }
    }

    private static KeyValuePair<string, object?> Tag(string model) => new("model", model);

    private IEnumerable<Measurement<long>> PerModel(Func<(string Model, Func<long> Queued, Func<long> Decoding), long> value)
    {
        (string, Func<long>, Func<long>)[] all;
        lock (gate) all = [.. models];
        return all.Select(m => new Measurement<long>(value(m), Tag(m.Item1)));
    }

    /// <summary>Process and .NET runtime figures, under the names Prometheus client libraries use.</summary>
    private static void RuntimeInstruments(Meter meter)
    {
        meter.CreateObservableCounter("process.cpu", () => Process(p => p.TotalProcessorTime.TotalSeconds), "s", "User and system CPU time spent, in seconds.");
        meter.CreateObservableGauge("process.resident_memory", () => Process(p => (double)p.WorkingSet64), "By", "Resident memory size in bytes (native memory, libtorch's included).");
        meter.CreateObservableGauge("process.virtual_memory", () => Process(p => (double)p.VirtualMemorySize64), "By", "Virtual memory size in bytes.");
        meter.CreateObservableGauge("process.start_time", () => s_startUnixSeconds, "s", "Start time of the process since the Unix epoch, in seconds.");
        meter.CreateObservableGauge("process.threads", () => Process(p => (double)p.Threads.Count), null, "Operating-system threads of the process.");
        meter.CreateObservableGauge("process.open_fds", OpenFileDescriptors, null, "Open file descriptors.");
        meter.CreateObservableCounter("dotnet.gc.collections", () => Enumerable.Range(0, GC.MaxGeneration + 1)
            .Select(g => new Measurement<long>(GC.CollectionCount(g), new KeyValuePair<string, object?>("generation", g.ToString(System.Globalization.CultureInfo.InvariantCulture)))),
            null, "Garbage collections by generation.");
        meter.CreateObservableGauge("dotnet.gc.heap_size", () => GC.GetGCMemoryInfo().HeapSizeBytes, "By", "Managed heap size after the last collection, in bytes.");
        meter.CreateObservableGauge("dotnet.gc.committed", () => GC.GetGCMemoryInfo().TotalCommittedBytes, "By", "Memory committed by the garbage collector, in bytes.");
        meter.CreateObservableCounter("dotnet.gc.allocated", () => GC.GetTotalAllocatedBytes(), "By", "Bytes allocated on the managed heap.");
        meter.CreateObservableCounter("dotnet.gc.pause", () => GC.GetTotalPauseDuration().TotalSeconds, "s", "Time the runtime was paused for garbage collection, in seconds.");
        meter.CreateObservableGauge("dotnet.total_memory", () => GC.GetTotalMemory(forceFullCollection: false), "By", "Managed memory in use (GC.GetTotalMemory), in bytes.");
        meter.CreateObservableGauge("dotnet.threadpool.threads", () => ThreadPool.ThreadCount, null, "Thread-pool threads.");
        meter.CreateObservableGauge("dotnet.threadpool.queue_length", () => ThreadPool.PendingWorkItemCount, null, "Work items waiting for the thread pool.");
        meter.CreateObservableCounter("dotnet.threadpool.completed_items", () => ThreadPool.CompletedWorkItemCount, null, "Work items the thread pool has completed.");
        meter.CreateObservableCounter("dotnet.monitor.lock_contention", () => Monitor.LockContentionCount, null, "Times a thread waited for a contended lock.");
    }

    private static double Process(Func<Process, double> read)
    {
        using var process = System.Diagnostics.Process.GetCurrentProcess();
        return read(process);
    }

    private static double StartTime()
    {
        using var process = System.Diagnostics.Process.GetCurrentProcess();
        return new DateTimeOffset(process.StartTime).ToUnixTimeMilliseconds() / 1000.0;
    }

    private static IEnumerable<Measurement<int>> OpenFileDescriptors()
    {
        int? count;
        try
        {
            count = Directory.Exists("/proc/self/fd") ? Directory.EnumerateFileSystemEntries("/proc/self/fd").Count() : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            count = null;
        }
        return count is int n ? [new Measurement<int>(n)] : [];
    }
}
