using System.Diagnostics;

namespace Transduce.Serving;

/// <summary>
/// The estimated cost of all admitted, unanswered requests over every model, bounded by
/// <see cref="ServeOptions.MaxInflightCost"/>. The last quarter of the budget is kept for small requests (those costing
/// at most a sixteenth of it): large requests are admitted only while the cost in flight stays within three quarters,
/// or when nothing is in flight, so a stream of the largest admissible requests cannot lock ordinary ones out. It also
/// learns how fast the decoders drain cost, to tell a refused client when to retry. Thread-safe.
/// </summary>
internal sealed class CostBudget
{
    private readonly object gate = new();
    private readonly long limit;
    private readonly int fallbackRetrySeconds;
    private readonly DrainRate drain = new();   // over every model's decoder
    private long inFlight;

    /// <summary>A budget of <paramref name="limit"/> cost units.</summary>
    public CostBudget(long limit, int fallbackRetrySeconds = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        this.limit = limit;
        this.fallbackRetrySeconds = Math.Max(1, fallbackRetrySeconds);
    }

    /// <summary>The budget.</summary>
    public long Limit => limit;

    /// <summary>Cost admitted and not yet released.</summary>
    public long InFlight
    {
        get { lock (gate) return inFlight; }
    }

    /// <summary>Requests costing more than this are large: they may not use the reserved last quarter of the budget.</summary>
    public long LargeRequest => limit / 16;

    /// <summary>
    /// Admits <paramref name="cost"/> if it fits (see the class); false (and nothing reserved) if it would go over the
    /// budget.
    /// </summary>
    public bool TryReserve(long cost)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cost);
        lock (gate)
        {
            long cap = cost <= LargeRequest || inFlight == 0 ? limit : limit - limit / 4;
            if (inFlight + cost > cap) return false;
            inFlight += cost;
            return true;
        }
    }

    /// <summary>Gives back <paramref name="cost"/> reserved earlier.</summary>
    public void Release(long cost)
    {
        lock (gate)
        {
            inFlight -= cost;
            Debug.Assert(inFlight >= 0, "released more cost than reserved");
            if (inFlight < 0) inFlight = 0;
        }
    }

    /// <summary>Records that a decoder call decoded <paramref name="cost"/> units in <paramref name="seconds"/>.</summary>
    public void ObserveDrain(long cost, double seconds) => drain.Observe(cost, seconds);

    /// <summary>
    /// Seconds until about <paramref name="cost"/> more would fit, at the observed drain rate (1–60); the configured
    /// fallback until a rate has been observed.
    /// </summary>
    public int RetryAfterSeconds(long cost)
    {
        double excess;
        lock (gate)
        {
            long cap = cost <= LargeRequest ? limit : limit - limit / 4;
            excess = Math.Max(0, inFlight + cost - cap);
        }
        return drain.Seconds(excess) is { } seconds ? (int)Math.Clamp(Math.Ceiling(seconds), 1, 60) : fallbackRetrySeconds;
    }
}
