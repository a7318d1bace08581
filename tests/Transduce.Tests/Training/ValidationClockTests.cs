using Transduce.Training;

namespace Transduce.Tests.Training;

public sealed class ValidationClockTests
{
    private static TimeSpan Minutes(double m) => TimeSpan.FromMinutes(m);

    [Fact]
    public void ATenthOfAnHourIsEverySixMinutesAndASlowStepGivesOneValidation()
    {
        var clock = new ValidationClock(Minutes(60), 0.1);
        Assert.Equal(Minutes(6), clock.Interval);
        Assert.False(clock.Due(Minutes(5.9)));
        Assert.True(clock.Due(Minutes(6.1)));
        Assert.False(clock.Due(Minutes(6.2)));
        Assert.True(clock.Due(Minutes(19)));    // past the marks at 12 and 18: one validation
        Assert.False(clock.Due(Minutes(23.9)));
        Assert.True(clock.Due(Minutes(24)));
    }

    [Fact]
    public void TheScheduleScalesWithTheTimeLimit()
    {
        Assert.Equal(Minutes(2), new ValidationClock(Minutes(20), 0.1).Interval);
        Assert.Equal(Minutes(60), new ValidationClock(Minutes(60), 1).Interval);
    }

    [Fact]
    public void AResumedRunKeepsTheScheduleOfTheRunItContinues()
    {
        var clock = new ValidationClock(Minutes(60), 0.1, elapsed: Minutes(13));
        Assert.False(clock.Due(Minutes(17.9)));
        Assert.True(clock.Due(Minutes(18)));
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-0.1)]
    [InlineData(1.5)]
    public void AFractionOutsideZeroToOneIsAClearError(double fraction)
    {
        Assert.Contains("(0, 1]", Assert.Throws<ArgumentException>(() => new ValidationClock(Minutes(60), fraction)).Message);
    }
}
