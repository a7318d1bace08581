using Transduce.Translation;

namespace Transduce.Serving;

/// <summary>
/// Limits and tuning of the translation service. Every limit on a request is checked before the request is queued;
/// costs are <see cref="Translation.DecodingCost.Cost"/> units (hypothesis positions: rows × (source + output)).
/// </summary>
public sealed record ServeOptions
{
    /// <summary>
    /// How long the batching worker, when idle, waits for more requests after the first one arrives. It waits only once
    /// requests have been coming together (its last batch held several): a lone request to an idle service starts at once.
    /// </summary>
    public TimeSpan BatchWindow { get; init; } = TimeSpan.FromMilliseconds(5);

    /// <summary>Sentences decoded together at most; a round stops gathering once it holds this many.</summary>
    public int MaxBatch { get; init; } = 64;

    /// <summary>Sentences waiting for the decoder at most (per model); past it requests get 503 with <c>Retry-After</c>.</summary>
    public int QueueLimit { get; init; } = 1024;

    /// <summary>Sentences one request may carry.</summary>
    public int MaxSentences { get; init; } = 64;

    /// <summary>Characters (UTF-16 code units) one sentence may have.</summary>
    public int MaxChars { get; init; } = 1000;

    /// <summary>Bytes a request body may have.</summary>
    public long MaxBodyBytes { get; init; } = 1 << 20;

    /// <summary>Largest beam (and n-best) a request may ask for.</summary>
    public int MaxBeam { get; init; } = 16;

    /// <summary>Beam used when a request names none.</summary>
    public int DefaultBeam { get; init; } = 1;

    /// <summary>
    /// Output tokens per sentence at most, as a function of its source tokens: <c>⌈ratio × (tokens + 1)⌉ + extra</c>
    /// (<see cref="Translation.TranslationOptions.MaxLengthA"/>), also for models with a fixed limit of their own (a
    /// MarianMT folder's <c>max_length</c>): the smaller applies.
    /// </summary>
    public double MaxOutputRatio { get; init; } = 2.0;

    /// <summary>The constant of the output limit (<see cref="Translation.TranslationOptions.MaxLengthB"/>).</summary>
    public int MaxOutputExtra { get; init; } = 10;

    /// <summary>Output tokens per sentence at most, whatever its length (<see cref="Translation.TranslationOptions.MaxOutputTokens"/>).</summary>
    public int MaxOutputTokens { get; init; } = 256;

    /// <summary>
    /// The estimated cost one request may have. A request over it is refused at once: 413 if it would be over even with
    /// beam 1 (send fewer or shorter sentences), else 422 (ask for a smaller beam or n-best).
    /// </summary>
    public long MaxRequestCost { get; init; } = 50_000;

    /// <summary>
    /// The estimated cost of all admitted requests not yet answered, over every model. A request that would go past it
    /// gets 503 with <c>Retry-After</c>. Its last quarter is kept for requests costing at most a sixteenth of it
    /// (<see cref="CostBudget"/>), so the largest requests cannot lock small ones out. At least <see cref="MaxRequestCost"/>.
    /// </summary>
    public long MaxInflightCost { get; init; } = 200_000;

    /// <summary>
    /// The estimated cost of one decoder call at most (at least one sentence is always decoded). Large requests are
    /// decoded a slice at a time, taking turns with the other queued requests, so that small requests do not wait
    /// behind a large one.
    /// </summary>
    public long MaxBatchCost { get; init; } = 8_192;

    /// <summary>Attention weights (target × source cells over every sentence) one response may carry.</summary>
    public long MaxAttentionCells { get; init; } = 1_000_000;

    /// <summary>Time a request may take, queueing included; past it the answer is 504 and its decoding stops.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Seconds suggested by <c>Retry-After</c> when the service cannot yet tell how fast it drains its work.</summary>
    public int RetryAfterSeconds { get; init; } = 1;

    /// <summary>Whether <c>--urls</c> may name addresses other than loopback (the operator said so explicitly).</summary>
    public bool AllowRemote { get; init; }

    /// <summary>
    /// Host names (<c>Host</c> header) the service answers; others get 400. Null: the loopback names
    /// (<c>localhost</c>, <c>127.0.0.1</c>, <c>[::1]</c>) when only loopback addresses are served, any host otherwise.
    /// </summary>
    public IReadOnlyList<string>? AllowedHosts { get; init; }

    /// <summary>When set, every <c>/v1/</c> and <c>/metrics</c> request needs <c>Authorization: Bearer</c> this key.</summary>
    public string? ApiKey { get; init; }

    /// <summary>Open connections at most (Kestrel's <c>MaxConcurrentConnections</c>); more wait in the listen backlog.</summary>
    public long MaxConnections { get; init; } = 512;

    /// <summary>Whether the request log carries the source sentences and translations (off: only counts and timings).</summary>
    public bool LogText { get; init; }

    /// <summary>Whether each request is logged (<c>Transduce.Serving.Requests</c>, level Information).</summary>
    public bool LogRequests { get; init; } = true;

    /// <summary>How the console log is written (to standard error; standard output is left to the start-up lines).</summary>
    public ServeLogFormat LogFormat { get; init; } = ServeLogFormat.Text;

    /// <summary>
    /// How long stopping may wait for admitted requests; then running decodes are stopped and waiting requests get
    /// 503. Null: <see cref="Timeout"/> plus 5 s.
    /// </summary>
    public TimeSpan? ShutdownTimeout { get; init; }

    /// <summary>
    /// Whether each model decodes a few short sentences in the usual shapes (greedy, batched, default and largest beam)
    /// before the service takes requests, so the first request does not pay for first-decode set-up; it also gives
    /// admission its first measure of the decoder's pace.
    /// </summary>
    public bool WarmUp { get; init; } = true;

    /// <summary>Shortest API key accepted.</summary>
    public const int MinApiKeyLength = 16;

    /// <summary>The number type of the model's linear layers in decoding (null: the checkpoint's default, else float32); see <see cref="Models.ComputeType"/>.</summary>
    public Models.ComputeType? ComputeType { get; init; }

    /// <summary>Which decoding kernels may run (<see cref="Models.DecodingKernels.Auto"/> by default); see <see cref="Translation.TranslationOptions.Kernels"/>.</summary>
    public Models.DecodingKernels Kernels { get; init; } = Models.DecodingKernels.Auto;

    /// <summary>Keep the native memory libtorch frees for reuse (process-wide); see <see cref="Translation.TranslationOptions.KeepFreedMemory"/>. Off by default; <c>transduce serve</c> turns it on.</summary>
    public bool KeepFreedMemory { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first setting out of range.</summary>
    public void Validate()
    {
        static void Positive(long value, string name)
        {
            if (value <= 0) throw new ArgumentException($"{name} must be positive (got {value})");
        }
        if (BatchWindow < TimeSpan.Zero) throw new ArgumentException($"--batch-window-ms must not be negative (got {BatchWindow.TotalMilliseconds})");
        Positive(MaxBatch, "--max-batch");
        Positive(QueueLimit, "--queue-limit");
        Positive(MaxSentences, "--max-sentences");
        Positive(MaxChars, "--max-chars");
        Positive(MaxBodyBytes, "--max-body-bytes");
        if (MaxBeam is < 1 or > Inference.BeamSearchOptions.MaxBeamSize)
            throw new ArgumentException($"--max-beam must be between 1 and {Inference.BeamSearchOptions.MaxBeamSize} (got {MaxBeam})");
        Positive(MaxOutputTokens, "--max-output-tokens");
        Positive(MaxRequestCost, "--max-request-cost");
        Positive(MaxInflightCost, "--max-inflight-cost");
        Positive(MaxBatchCost, "--max-batch-cost");
        Positive(MaxAttentionCells, "--max-attention-cells");
        Positive(MaxConnections, "--max-connections");
        if (!(MaxOutputRatio >= 0) || double.IsInfinity(MaxOutputRatio))
            throw new ArgumentException($"--max-output-ratio must be a non-negative number (got {MaxOutputRatio})");
        if (MaxOutputExtra < 0) throw new ArgumentException($"--max-output-extra must not be negative (got {MaxOutputExtra})");
        if (DefaultBeam < 1 || DefaultBeam > MaxBeam) throw new ArgumentException($"the default beam must be between 1 and {MaxBeam} (got {DefaultBeam})");
        if (Timeout <= TimeSpan.Zero) throw new ArgumentException($"--timeout-s must be positive (got {Timeout.TotalSeconds})");
        if (RetryAfterSeconds < 1) throw new ArgumentException($"Retry-After must be at least 1 s (got {RetryAfterSeconds})");
        if (MaxSentences > QueueLimit)
            throw new ArgumentException($"--max-sentences ({MaxSentences}) exceeds --queue-limit ({QueueLimit}): no request of that size could ever be queued");
        if (MaxRequestCost > MaxInflightCost)
            throw new ArgumentException($"--max-request-cost ({MaxRequestCost}) exceeds --max-inflight-cost ({MaxInflightCost}): a request of that cost could never be admitted");
        if (ApiKey is not null && (ApiKey.Length < MinApiKeyLength || ApiKey.Any(c => char.IsWhiteSpace(c) || char.IsControl(c))))
            throw new ArgumentException($"the API key must be at least {MinApiKeyLength} characters without spaces or control characters");
        if (AllowedHosts is { Count: 0 }) throw new ArgumentException("--allowed-hosts: no host given");
        if (ShutdownTimeout is { } shutdown && shutdown < TimeSpan.Zero)
            throw new ArgumentException($"--shutdown-timeout-s must not be negative (got {shutdown.TotalSeconds})");
    }

    /// <summary>The decoding options a request with <paramref name="beam"/> and <paramref name="nBest"/> is decoded with.</summary>
    public Translation.TranslationOptions Decoding(int beam, int nBest) => new()
    {
        Beam = beam, NBest = nBest, BatchSize = MaxBatch,
        MaxLengthA = MaxOutputRatio, MaxLengthB = MaxOutputExtra, MaxOutputTokens = MaxOutputTokens, AlwaysApplyLengthRule = true,
        Kernels = Kernels, KeepFreedMemory = KeepFreedMemory,
    };
}

/// <summary>Console log formats of the service.</summary>
public enum ServeLogFormat
{
    /// <summary>One human-readable line per event.</summary>
    Text,

    /// <summary>One JSON object per event, with every field of the message as a property (for log collectors).</summary>
    Json,
}
