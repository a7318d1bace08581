namespace Transduce.Serving;

/// <summary>
/// How fast a decoder works off estimated cost: a moving average of cost decoded per second of decoding, over decoder
/// calls (recent calls weigh most, so a host that becomes loaded is noticed within a few calls). Thread-safe.
/// </summary>
internal sealed class DrainRate
{
    private readonly object gate = new();
    private double costPerSecond;

    /// <summary>Cost units per second; 0 until a call has been observed.</summary>
    public double CostPerSecond
    {
        get { lock (gate) return costPerSecond; }
    }

    /// <summary>Records that a decoder call decoded <paramref name="cost"/> units in <paramref name="seconds"/>.</summary>
    public void Observe(long cost, double seconds)
    {
        if (cost <= 0 || !(seconds > 0)) return;
        double rate = cost / seconds;
        lock (gate) costPerSecond = costPerSecond == 0 ? rate : 0.8 * costPerSecond + 0.2 * rate;
    }

    /// <summary>Seconds <paramref name="cost"/> units take at the observed rate; null while no rate is known.</summary>
    public double? Seconds(double cost)
    {
        double rate = CostPerSecond;
        return rate > 0 ? cost / rate : null;
    }
}
