using Transduce.Text;

namespace Transduce.Tests.Text;

public sealed class WordTokenizerTests
{
    [Fact]
    public void TokenizerSplitsOnSpacesAndDropsEmpties()
    {
        Assert.Equal(["go", "."], WordTokenizer.Split("go ."));
        Assert.Equal(["a", "b", "c"], WordTokenizer.Split("  a  b c "));
        Assert.Empty(WordTokenizer.Split("   "));
        Assert.Equal(["a\tb"], WordTokenizer.Split("a\tb")); // only U+0020 separates, as in d2l
        var tok = new WordTokenizer(Vocabulary.Build([["a", "b", "c"]]));
        Assert.Equal([4, 5, 3, 6], tok.EncodeToIds(" a b  zz c"));   // unknown words are <unk> (3)
        Assert.Equal("a b <unk> c", tok.Decode([4, 5, 3, 6, 2, 4])); // decoding stops at <eos> (2)
        Assert.Equal("a b zz c", tok.DecodeTokens(tok.EncodeToTokens("a b zz c"))); // surface forms keep unknown words
        Assert.Equal(4, tok.CountTokens(" a b  zz c"));
        Assert.Equal("", tok.Decode([]));
    }
}
