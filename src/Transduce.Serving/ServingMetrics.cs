using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace Transduce.Serving;

/// <summary>
/// The service's counters and histograms, rendered in the Prometheus text exposition format (version 0.0.4)
/// by <see cref="Render"/>. All members are thread-safe.
/// </summary>
public sealed class ServingMetrics
{
    /// <summary>Upper bounds (seconds) of the request-latency histogram buckets.</summary>
    public static readonly double[] LatencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

    /// <summary>Upper bounds (sentences) of the batch-size histogram buckets.</summary>
    public static readonly double[] BatchBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256];

    private readonly ConcurrentDictionary<(string Endpoint, int Status), long> requests = new();
    private readonly ConcurrentDictionary<string, long> errors = new();
    private readonly ConcurrentDictionary<string, Histogram> latency = new();
    private readonly Histogram batchSizes = new(BatchBuckets);
    private readonly Histogram decodeSeconds = new(LatencyBuckets);
    private long sentences, sourceTokens, targetTokens, dropped;
    private Func<long> queuedSentences = () => 0;

    /// <summary>Counts one finished HTTP request and its latency.</summary>
    public void ObserveRequest(string endpoint, int status, double seconds)
    {
        requests.AddOrUpdate((endpoint, status), 1, (_, n) => n + 1);
        latency.GetOrAdd(endpoint, _ => new Histogram(LatencyBuckets)).Observe(seconds);
    }

    /// <summary>Counts one failed translation request by <paramref name="reason"/> (e.g. <c>invalid</c>, <c>queue_full</c>).</summary>
    public void CountError(string reason) => errors.AddOrUpdate(reason, 1, (_, n) => n + 1);

    /// <summary>Records one decoder batch of <paramref name="size"/> sentences.</summary>
    public void ObserveBatch(int size) => batchSizes.Observe(size);

    /// <summary>Records the wall time of one decoder call.</summary>
    public void ObserveDecode(double seconds) => decodeSeconds.Observe(seconds);

    /// <summary>Counts translated sentences and their source and (best) target tokens.</summary>
    public void CountTranslated(int sentenceCount, long source, long target)
    {
        Interlocked.Add(ref sentences, sentenceCount);
        Interlocked.Add(ref sourceTokens, source);
        Interlocked.Add(ref targetTokens, target);
    }

    /// <summary>Counts queued requests dropped before decoding because their client left or their time ran out.</summary>
    public void CountDropped(int requestCount) => Interlocked.Add(ref dropped, requestCount);

    /// <summary>Sets the gauge source of the sentences waiting in the queue.</summary>
    public void SetQueueGauge(Func<long> source) => queuedSentences = source;

    /// <summary>Sentences translated so far.</summary>
    public long SentencesTranslated => Interlocked.Read(ref sentences);

    /// <summary>Requests dropped before decoding so far.</summary>
    public long RequestsDropped => Interlocked.Read(ref dropped);

    /// <summary>Decoder batches so far and the largest one.</summary>
    public (long Count, double Max) Batches => batchSizes.CountAndMax;

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

        Header(sb, "transduce_sentences_translated_total", "counter", "Sentences translated.");
        Line(sb, "transduce_sentences_translated_total", null, Interlocked.Read(ref sentences));
        Header(sb, "transduce_source_tokens_total", "counter", "Source tokens translated (as the model's tokenizer splits them).");
        Line(sb, "transduce_source_tokens_total", null, Interlocked.Read(ref sourceTokens));
        Header(sb, "transduce_target_tokens_total", "counter", "Tokens of the best translations produced.");
        Line(sb, "transduce_target_tokens_total", null, Interlocked.Read(ref targetTokens));
        Header(sb, "transduce_requests_dropped_total", "counter", "Queued requests dropped before decoding (client gone or timed out).");
        Line(sb, "transduce_requests_dropped_total", null, Interlocked.Read(ref dropped));
        Header(sb, "transduce_queue_sentences", "gauge", "Sentences waiting for the decoder.");
        Line(sb, "transduce_queue_sentences", null, queuedSentences());

        Header(sb, "transduce_batch_size", "histogram", "Sentences per decoder batch.");
        batchSizes.Render(sb, "transduce_batch_size", null);
        Header(sb, "transduce_decode_duration_seconds", "histogram", "Wall time of one decoder call (one group of requests).");
        decodeSeconds.Render(sb, "transduce_decode_duration_seconds", null);
        return sb.ToString();
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
