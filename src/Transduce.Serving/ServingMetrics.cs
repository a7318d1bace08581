using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Transduce.Serving;

/// <summary>
/// The service's counters and histograms, and the process's runtime figures (CPU, memory, GC, thread pool), rendered
/// in the Prometheus text exposition format (version 0.0.4) by <see cref="Render"/>. All members are thread-safe.
/// </summary>
internal sealed class ServingMetrics
{
    /// <summary>Upper bounds (seconds) of the request-latency histogram buckets.</summary>
    public static readonly double[] LatencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

    /// <summary>Upper bounds (sentences) of the batch-size histogram buckets.</summary>
    public static readonly double[] BatchBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256];

    private static readonly double s_startUnixSeconds = StartTime();

    private readonly ConcurrentDictionary<(string Endpoint, int Status), long> requests = new();
    private readonly ConcurrentDictionary<string, long> errors = new();
    private readonly ConcurrentDictionary<string, Histogram> latency = new();
    private readonly ConcurrentDictionary<string, ModelCounters> models = new(StringComparer.Ordinal);
    private Func<(long InFlight, long Limit)> budget = () => (0, 0);

    /// <summary>Counts one finished HTTP request and its latency.</summary>
    public void ObserveRequest(string endpoint, int status, double seconds)
    {
        requests.AddOrUpdate((endpoint, status), 1, (_, n) => n + 1);
        latency.GetOrAdd(endpoint, _ => new Histogram(LatencyBuckets)).Observe(seconds);
    }

    /// <summary>Counts one failed translation request by <paramref name="reason"/> (e.g. <c>invalid</c>, <c>queue_full</c>).</summary>
    public void CountError(string reason) => errors.AddOrUpdate(reason, 1, (_, n) => n + 1);

    /// <summary>Adds a served model with the sources of its queue and decoder gauges.</summary>
    public void RegisterModel(string model, Func<long> queuedSentences, Func<long> decodingSentences)
    {
        var m = Model(model);
        m.Queued = queuedSentences;
        m.Decoding = decodingSentences;
    }

    /// <summary>Sets the source of the in-flight cost gauge.</summary>
    public void SetBudgetGauge(Func<(long InFlight, long Limit)> source) => budget = source;

    /// <summary>Records one decoder call of <paramref name="size"/> sentences.</summary>
    public void ObserveBatch(string model, int size) => Model(model).BatchSizes.Observe(size);

    /// <summary>Records the wall time of one decoder call.</summary>
    public void ObserveDecode(string model, double seconds) => Model(model).DecodeSeconds.Observe(seconds);

    /// <summary>Counts translated sentences and their source and (best) target tokens.</summary>
    public void CountTranslated(string model, int sentenceCount, long source, long target)
    {
        var m = Model(model);
        Interlocked.Add(ref m.Sentences, sentenceCount);
        Interlocked.Add(ref m.SourceTokens, source);
        Interlocked.Add(ref m.TargetTokens, target);
    }

    /// <summary>Counts requests dropped unfinished because their client left or their time ran out.</summary>
    public void CountDropped(string model, int requestCount) => Interlocked.Add(ref Model(model).Dropped, requestCount);

    /// <summary>Counts one decoder call stopped mid-way (every request in it was cancelled, or the service stopped).</summary>
    public void CountDecodeCancelled(string model) => Interlocked.Increment(ref Model(model).DecodesCancelled);

    /// <summary>Sentences translated so far, over every model.</summary>
    public long SentencesTranslated => models.Values.Sum(m => Interlocked.Read(ref m.Sentences));

    /// <summary>Requests dropped unfinished so far, over every model.</summary>
    public long RequestsDropped => models.Values.Sum(m => Interlocked.Read(ref m.Dropped));

    /// <summary>Decoder calls stopped mid-way so far, over every model.</summary>
    public long DecodesCancelled => models.Values.Sum(m => Interlocked.Read(ref m.DecodesCancelled));

    /// <summary>Decoder calls so far and the largest one, over every model.</summary>
    public (long Count, double Max) Batches
    {
        get
        {
            var all = models.Values.Select(m => m.BatchSizes.CountAndMax).ToArray();
            return (all.Sum(a => a.Item1), all.Length == 0 ? 0 : all.Max(a => a.Item2));
        }
    }

    private ModelCounters Model(string model) => models.GetOrAdd(model, _ => new ModelCounters());

    /// <summary>Renders every metric in the Prometheus text format.</summary>
    public string Render()
    {
        var sb = new StringBuilder();
        Header(sb, "transduce_http_requests_total", "counter", "HTTP requests by endpoint and status code.");
        foreach (var ((endpoint, status), n) in requests.OrderBy(p => p.Key.Endpoint, StringComparer.Ordinal).ThenBy(p => p.Key.Status))
            Line(sb, "transduce_http_requests_total", $"endpoint=\"{Escape(endpoint)}\",status=\"{status}\"", n);

        Header(sb, "transduce_http_request_duration_seconds", "histogram", "HTTP request latency by endpoint.");
        foreach (var (endpoint, h) in latency.OrderBy(p => p.Key, StringComparer.Ordinal))
            h.Render(sb, "transduce_http_request_duration_seconds", $"endpoint=\"{Escape(endpoint)}\"");

        Header(sb, "transduce_translate_errors_total", "counter", "Translation requests that failed, by reason.");
        foreach (var (reason, n) in errors.OrderBy(p => p.Key, StringComparer.Ordinal))
            Line(sb, "transduce_translate_errors_total", $"reason=\"{Escape(reason)}\"", n);

        var byModel = models.OrderBy(p => p.Key, StringComparer.Ordinal).ToArray();
        void PerModel(string name, string type, string help, Func<ModelCounters, double> value)
        {
            Header(sb, name, type, help);
            foreach (var (model, m) in byModel) Line(sb, name, $"model=\"{Escape(model)}\"", value(m));
        }
        PerModel("transduce_sentences_translated_total", "counter", "Sentences translated.", m => Interlocked.Read(ref m.Sentences));
        PerModel("transduce_source_tokens_total", "counter", "Source tokens translated (as the model's tokenizer splits them).", m => Interlocked.Read(ref m.SourceTokens));
        PerModel("transduce_target_tokens_total", "counter", "Tokens of the best translations produced.", m => Interlocked.Read(ref m.TargetTokens));
        PerModel("transduce_requests_dropped_total", "counter", "Requests dropped unfinished because the client left or the time ran out.", m => Interlocked.Read(ref m.Dropped));
        PerModel("transduce_decodes_cancelled_total", "counter", "Decoder calls stopped mid-way: every request in them was cancelled, or the service stopped.", m => Interlocked.Read(ref m.DecodesCancelled));
        PerModel("transduce_queue_sentences", "gauge", "Sentences waiting for the decoder.", m => m.Queued());
        PerModel("transduce_decoding_sentences", "gauge", "Sentences in the decoder call running now.", m => m.Decoding());
        Header(sb, "transduce_batch_size", "histogram", "Sentences per decoder call.");
        foreach (var (model, m) in byModel) m.BatchSizes.Render(sb, "transduce_batch_size", $"model=\"{Escape(model)}\"");
        Header(sb, "transduce_decode_duration_seconds", "histogram", "Wall time of one decoder call.");
        foreach (var (model, m) in byModel) m.DecodeSeconds.Render(sb, "transduce_decode_duration_seconds", $"model=\"{Escape(model)}\"");

        var (inFlight, limit) = budget();
        Header(sb, "transduce_inflight_cost", "gauge", "Estimated cost of the admitted requests not yet answered.");
        Line(sb, "transduce_inflight_cost", null, inFlight);
        Header(sb, "transduce_inflight_cost_limit", "gauge", "The in-flight cost budget (--max-inflight-cost).");
        Line(sb, "transduce_inflight_cost_limit", null, limit);

        RenderRuntime(sb);
        return sb.ToString();
    }

    /// <summary>Process and .NET runtime figures, under the names Prometheus client libraries use.</summary>
    private static void RenderRuntime(StringBuilder sb)
    {
        using var process = Process.GetCurrentProcess();
        Header(sb, "process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
        Line(sb, "process_cpu_seconds_total", null, process.TotalProcessorTime.TotalSeconds);
        Header(sb, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes (native memory, libtorch's included).");
        Line(sb, "process_resident_memory_bytes", null, process.WorkingSet64);
        Header(sb, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        Line(sb, "process_virtual_memory_bytes", null, process.VirtualMemorySize64);
        Header(sb, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.");
        Line(sb, "process_start_time_seconds", null, s_startUnixSeconds);
        Header(sb, "process_threads", "gauge", "Operating-system threads of the process.");
        Line(sb, "process_threads", null, process.Threads.Count);
        if (OpenFileDescriptors() is int fds)
        {
            Header(sb, "process_open_fds", "gauge", "Open file descriptors.");
            Line(sb, "process_open_fds", null, fds);
        }

        var gc = GC.GetGCMemoryInfo();
        Header(sb, "dotnet_gc_collections_total", "counter", "Garbage collections by generation.");
        for (int g = 0; g <= GC.MaxGeneration; g++) Line(sb, "dotnet_gc_collections_total", $"generation=\"{g}\"", GC.CollectionCount(g));
        Header(sb, "dotnet_gc_heap_size_bytes", "gauge", "Managed heap size after the last collection, in bytes.");
        Line(sb, "dotnet_gc_heap_size_bytes", null, gc.HeapSizeBytes);
        Header(sb, "dotnet_gc_committed_bytes", "gauge", "Memory committed by the garbage collector, in bytes.");
        Line(sb, "dotnet_gc_committed_bytes", null, gc.TotalCommittedBytes);
        Header(sb, "dotnet_gc_allocated_bytes_total", "counter", "Bytes allocated on the managed heap.");
        Line(sb, "dotnet_gc_allocated_bytes_total", null, GC.GetTotalAllocatedBytes());
        Header(sb, "dotnet_gc_pause_seconds_total", "counter", "Time the runtime was paused for garbage collection, in seconds.");
        Line(sb, "dotnet_gc_pause_seconds_total", null, GC.GetTotalPauseDuration().TotalSeconds);
        Header(sb, "dotnet_total_memory_bytes", "gauge", "Managed memory in use (GC.GetTotalMemory), in bytes.");
        Line(sb, "dotnet_total_memory_bytes", null, GC.GetTotalMemory(forceFullCollection: false));

        Header(sb, "dotnet_threadpool_threads", "gauge", "Thread-pool threads.");
        Line(sb, "dotnet_threadpool_threads", null, ThreadPool.ThreadCount);
        Header(sb, "dotnet_threadpool_queue_length", "gauge", "Work items waiting for the thread pool.");
        Line(sb, "dotnet_threadpool_queue_length", null, ThreadPool.PendingWorkItemCount);
        Header(sb, "dotnet_threadpool_completed_items_total", "counter", "Work items the thread pool has completed.");
        Line(sb, "dotnet_threadpool_completed_items_total", null, ThreadPool.CompletedWorkItemCount);
        Header(sb, "dotnet_monitor_lock_contention_total", "counter", "Times a thread waited for a contended lock.");
        Line(sb, "dotnet_monitor_lock_contention_total", null, Monitor.LockContentionCount);
    }

    private static double StartTime()
    {
        using var process = Process.GetCurrentProcess();
        return new DateTimeOffset(process.StartTime).ToUnixTimeMilliseconds() / 1000.0;
    }

    private static int? OpenFileDescriptors()
    {
        try
        {
            return Directory.Exists("/proc/self/fd") ? Directory.EnumerateFileSystemEntries("/proc/self/fd").Count() : null;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static void Header(StringBuilder sb, string name, string type, string help) =>
        sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n')
          .Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');

    private static void Line(StringBuilder sb, string name, string? labels, double value)
    {
        sb.Append(name);
        if (!string.IsNullOrEmpty(labels)) sb.Append('{').Append(labels).Append('}');
        sb.Append(' ').Append(Format(value)).Append('\n');
    }

    private static string Format(double value) =>
        double.IsPositiveInfinity(value) ? "+Inf" : value.ToString("R", CultureInfo.InvariantCulture);

    private static string Escape(string value) => value.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");

    private sealed class ModelCounters
    {
        public long Sentences, SourceTokens, TargetTokens, Dropped, DecodesCancelled;
        public readonly Histogram BatchSizes = new(BatchBuckets);
        public readonly Histogram DecodeSeconds = new(LatencyBuckets);
        public Func<long> Queued = () => 0;
        public Func<long> Decoding = () => 0;
    }

    private sealed class Histogram(double[] bounds)
    {
        private readonly long[] counts = new long[bounds.Length];
        private readonly object gate = new();
        private long count;
        private double sum, max;

        public void Observe(double value)
        {
            lock (gate)
            {
                for (int i = 0; i < bounds.Length; i++)
                    if (value <= bounds[i]) counts[i]++;
                count++;
                sum += value;
                max = Math.Max(max, value);
            }
        }

        public (long, double) CountAndMax
        {
            get { lock (gate) return (count, max); }
        }

        public void Render(StringBuilder sb, string name, string? labels)
        {
            string prefix = string.IsNullOrEmpty(labels) ? "" : labels + ",";
            lock (gate)
            {
                for (int i = 0; i < bounds.Length; i++)
                    Line(sb, name + "_bucket", $"{prefix}le=\"{Format(bounds[i])}\"", counts[i]);
                Line(sb, name + "_bucket", $"{prefix}le=\"+Inf\"", count);
                Line(sb, name + "_sum", labels, sum);
                Line(sb, name + "_count", labels, count);
            }
        }
    }
}
