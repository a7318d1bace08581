namespace Transduce.Training;

/// <summary>
/// When to validate a run that validates by the clock: every <see cref="Interval"/> of training time (a fraction of the
/// time limit), counted from the start of the run, so a resumed run keeps the schedule of the run it continues.
/// A slow step that passes several marks gives one validation, not a burst.
/// </summary>
internal sealed class ValidationClock
{
    private TimeSpan next;

    /// <summary>A schedule of one validation every <paramref name="fraction"/> of <paramref name="timeLimit"/>, for a run at <paramref name="elapsed"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="fraction"/> is not in (0, 1] or the time limit is not positive.</exception>
    public ValidationClock(TimeSpan timeLimit, double fraction, TimeSpan elapsed = default)
    {
        if (fraction is <= 0 or > 1 || double.IsNaN(fraction)) throw new ArgumentException($"validation fraction must be in (0, 1], not {fraction}");
        if (timeLimit <= TimeSpan.Zero) throw new ArgumentException($"time limit must be positive, not {timeLimit}");
        Interval = timeLimit * fraction;
        next = Interval * (Math.Floor(elapsed / Interval) + 1);
    }

    /// <summary>Training time between validations.</summary>
    public TimeSpan Interval { get; }

    /// <summary>True when a validation is due at <paramref name="elapsed"/>; the schedule then moves past it.</summary>
    public bool Due(TimeSpan elapsed)
    {
        if (elapsed < next) return false;
        while (next <= elapsed) next += Interval;
        return true;
    }
}
