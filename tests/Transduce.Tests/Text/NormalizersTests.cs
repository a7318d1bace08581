using Transduce.Text;

namespace Transduce.Tests.Text;

public sealed class NormalizersTests
{
    private readonly D2lNormalizer _d2l = new();

    [Theory]
    [InlineData("Go.", "go .")]
    [InlineData("Va !", "va !")]
    [InlineData("Hello,world!", "hello ,world !")]
    [InlineData("Who?", "who ?")]
    [InlineData(".Start", ".start")] // i == 0: no space inserted
    [InlineData("Wait...", "wait . . .")]
    [InlineData("", "")]
    public void D2lNormalizerMatchesPreprocessNmt(string input, string expected)
    {
        Assert.Equal(expected, _d2l.Normalize(input));
    }

    [Fact]
    public void D2lNormalizerOnWholeTatoebaLine()
    {
        Assert.Equal("go .\tva !", _d2l.Normalize("Go.\tVa !"));
    }

    [Fact]
    public void D2lNormalizerReplacesNoBreakSpacesWithoutDoubling()
    {
        // Tatoeba French puts U+202F (or U+00A0) before '!' and '?'; it becomes the space before the mark.
        Assert.Equal("cours !", _d2l.Normalize("Cours\u202F!"));
        Assert.Equal("qui ?", _d2l.Normalize("Qui\u00A0?"));
        Assert.Equal("a b", _d2l.Normalize("A\u00A0B"));
    }

    [Fact]
    public void IdentityNormalizerReturnsInput()
    {
        Assert.Equal("Go.\u202F!", new IdentityNormalizer().Normalize("Go.\u202F!"));
    }

    [Fact]
    public void FromNameResolvesKnownNamesAndRejectsOthers()
    {
        Assert.IsType<D2lNormalizer>(TextNormalizers.FromName("d2l"));
        Assert.IsType<IdentityNormalizer>(TextNormalizers.FromName("none"));
        Assert.Equal("d2l", TextNormalizers.FromName("D2L").Name);
        var ex = Assert.Throws<ArgumentException>(() => TextNormalizers.FromName("nfkc"));
        Assert.Contains("nfkc", ex.Message);
        Assert.Contains("none", ex.Message);
        Assert.Contains("d2l", ex.Message);
    }
}
