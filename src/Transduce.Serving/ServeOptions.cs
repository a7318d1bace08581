namespace Transduce.Serving;

/// <summary>Limits and tuning of the translation service. Every limit is checked before a request is queued.</summary>
public sealed record ServeOptions
{
    /// <summary>How long the batching worker waits for more requests after the first one arrives.</summary>
    public TimeSpan BatchWindow { get; init; } = TimeSpan.FromMilliseconds(5);

    /// <summary>Sentences decoded together at most; a round stops gathering once it holds this many.</summary>
    public int MaxBatch { get; init; } = 64;

    /// <summary>Sentences waiting for the decoder at most; past it requests get 503 with <c>Retry-After</c>.</summary>
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

    /// <summary>Time a request may take, queueing included; past it the answer is 504.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Seconds suggested to a client by <c>Retry-After</c> when the queue is full.</summary>
    public int RetryAfterSeconds { get; init; } = 1;

    /// <summary>The number type of the decoder's products (null: the checkpoint's default, else float32); see <see cref="Models.ComputeType"/>.</summary>
    public Models.ComputeType? ComputeType { get; init; }

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
        Positive(MaxBeam, "max beam");
        if (DefaultBeam < 1 || DefaultBeam > MaxBeam) throw new ArgumentException($"the default beam must be between 1 and {MaxBeam} (got {DefaultBeam})");
        if (Timeout <= TimeSpan.Zero) throw new ArgumentException($"--timeout-s must be positive (got {Timeout.TotalSeconds})");
        if (MaxSentences > QueueLimit)
            throw new ArgumentException($"--max-sentences ({MaxSentences}) exceeds --queue-limit ({QueueLimit}): no request of that size could ever be queued");
    }
}
