using Transduce.Evaluation;

namespace Transduce.Tests.Evaluation;

public sealed class D2lBleuTests
{
    [Theory]
    [InlineData("va !")]
    [InlineData("j'ai perdu .")]
    [InlineData("je suis chez moi .")]
    public void BookExamplesWithCorrectTranslationScoreOne(string translation)
    {
        // d2l §10.7 prints e.g. "go . => va !, bleu 1.000" for predictions equal to the label (k = 2).
        Assert.Equal(1.0, D2lBleu.Score(translation, translation, 2), 12);
    }

    [Fact]
    public void PartialMatch()
    {
        // p1 = 3/4 (a, b, d), p2 = 1/3 (only "a b"), equal lengths so no penalty.
        double expected = Math.Pow(3.0 / 4, 0.5) * Math.Pow(1.0 / 3, 0.25);
        Assert.Equal(expected, D2lBleu.Score("a b c d", "a b e d", 2), 12);
        Assert.Equal(0.658037, D2lBleu.Score("a b c d", "a b e d", 2), 6);
    }

    [Fact]
    public void ShortPredictionIsPenalised()
    {
        // All n-grams match, but exp(1 - 4/2) = 1/e.
        Assert.Equal(Math.Exp(-1), D2lBleu.Score("a b", "a b c d", 2), 12);
    }

    [Fact]
    public void OrdersLongerThanThePredictionAreSkipped()
    {
        // len_pred = 1 < k = 4: only n = 1 is evaluated (d2l loops to min(k, len_pred)); no division by zero.
        Assert.Equal(Math.Exp(-1), D2lBleu.Score("a", "a b", 4), 12);
    }

    [Fact]
    public void MatchesAreClippedByLabelCounts()
    {
        // Only one "a" in the label: p1 = 1/3; the label is shorter, so no penalty.
        Assert.Equal(Math.Sqrt(1.0 / 3), D2lBleu.Score("a a a", "a b", 1), 12);
    }

    [Fact]
    public void NoMatchScoresZero() => Assert.Equal(0.0, D2lBleu.Score("x y", "a b", 2));
}

public sealed class SacreBleuTests
{
    [Fact]
    public void PerfectMatchIsHundred()
    {
        var s = SacreBleu.CorpusScore(["The cat sat on the mat."], [["The cat sat on the mat."]]);
        Assert.Equal(100.0, s.Score, 9);
        Assert.Equal(1.0, s.BrevityPenalty);
        Assert.Equal(7, s.SysLen); // "The cat sat on the mat ."
        Assert.Equal("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0", s.Signature);
        Assert.Equal("BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 7 ref_len = 7)",
            s.ToString());
        Assert.Equal(100.0, SacreBleu.SentenceScore("The cat sat on the mat.", ["The cat sat on the mat."]).Score, 9);
    }

    [Fact]
    public void EmptyHypothesisScoresZero()
    {
        var s = SacreBleu.SentenceScore("", ["hello world"]);
        Assert.Equal(0.0, s.Score);
        Assert.Equal(0, s.SysLen);
        Assert.Equal(2, s.RefLen);
        Assert.Equal(0.0, s.BrevityPenalty);
        Assert.Equal(new long[4], s.Counts);
        Assert.Equal("nrefs:1|case:mixed|eff:yes|tok:13a|smooth:exp|version:2.6.0", s.Signature);
    }

    [Fact]
    public void EffectiveOrderIgnoresMissingOrders()
    {
        // 3 tokens: 1-, 2-, 3-grams all match, there is no 4-gram. BP = exp(1 - 4/3).
        var corpus = SacreBleu.CorpusScore(["the cat sat"], [["the cat sat down"]]);
        Assert.Equal(new long[] { 3, 2, 1, 0 }, corpus.Counts);
        Assert.Equal(new long[] { 3, 2, 1, 0 }, corpus.Totals);
        Assert.Equal(0.0, corpus.Score, 9); // precision 0 for n = 4 without effective order
        var sentence = SacreBleu.SentenceScore("the cat sat", ["the cat sat down"]);
        Assert.Equal(100 * Math.Exp(1 - 4.0 / 3), sentence.Score, 9);
    }

    [Fact]
    public void ExpSmoothingHalvesEachMissingOrder()
    {
        // "a b c x" vs "a b c d": counts 3/2/1/0, totals 4/3/2/1 -> p4 = 100 / (2 * 1).
        var s = SacreBleu.CorpusScore(["a b c x"], [["a b c d"]]);
        Assert.Equal(new[] { 75.0, 100 * 2.0 / 3, 50.0, 50.0 }, s.Precisions);
        double expected = Math.Exp((Math.Log(75) + Math.Log(200.0 / 3) + Math.Log(50) + Math.Log(50)) / 4);
        Assert.Equal(expected, s.Score, 9);
    }

    [Fact]
    public void ClosestReferenceLengthPrefersTheShorterOnTies()
    {
        var s = SacreBleu.CorpusScore(["a b c"], [["a b"], ["a b c d"]]);
        Assert.Equal(2, s.RefLen);
        Assert.StartsWith("nrefs:2|", s.Signature);
    }

    [Fact]
    public void LowercaseOption()
    {
        var s = SacreBleu.SentenceScore("HELLO WORLD", ["hello world"], new BleuOptions(Lowercase: true));
        Assert.Equal(100.0, s.Score, 9);
        Assert.Contains("|case:lc|", s.Signature);
    }

    [Fact]
    public void SmoothingWithValueAppearsInSignature()
    {
        var s = SacreBleu.CorpusScore(["a"], [["a"]], new BleuOptions(Smooth: "floor"));
        Assert.Equal("nrefs:1|case:mixed|eff:no|tok:13a|smooth:floor[0.10]|version:2.6.0", s.Signature);
    }

    [Fact]
    public void StreamsOfTheWrongLengthAreRejected()
    {
        Assert.Throws<ArgumentException>(() => SacreBleu.CorpusScore(["a", "b"], [["a"]]));
        Assert.Throws<ArgumentException>(() => SacreBleu.CorpusScore(["a"], [["a"]], new BleuOptions(Tokenize: "zh")));
    }

    [Theory]
    [InlineData("13a", "Hello, world! It's 3.5-4 km.", "Hello , world ! It's 3.5 - 4 km .")]
    [InlineData("13a", "in 2019.", "in 2019 .")]
    [InlineData("13a", "a &amp; b &lt;c&gt;", "a & b < c >")]
    [InlineData("intl", "Hello, world! 3.5 €", "Hello , world ! 3.5 €")]
    [InlineData("intl", "in 2019.", "in 2019.")] // mteval-v14 quirk kept by sacreBLEU
    [InlineData("intl", "« Ça va ? »", "« Ça va ? »")]
    [InlineData("none", "  as  is ", "  as  is ")]
    public void Tokenizers(string name, string input, string expected) =>
        Assert.Equal(expected, BleuTokenizer.Tokenize(name, input));
}

public sealed class ChrFTests
{
    [Fact]
    public void PerfectMatchIsHundred()
    {
        var s = ChrF.SentenceScore("Le chat dort.", ["Le chat dort."]);
        Assert.Equal(100.0, s.Score, 9);
        Assert.Equal("chrF2 = 100.00", s.ToString());
        Assert.Equal("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0", s.Signature);
        var pp = ChrF.CorpusScore(["Hello, world!"], [["Hello, world!"]], ChrFOptions.ChrFPlusPlus);
        Assert.Equal(100.0, pp.Score, 9);
        Assert.Equal("chrF2++", pp.Name);
        Assert.Contains("|nw:2|", pp.Signature);
    }

    [Fact]
    public void EmptyHypothesisScoresZero() => Assert.Equal(0.0, ChrF.SentenceScore("", ["Le chat dort."]).Score);

    [Fact]
    public void HandComputedScore()
    {
        // Orders 1 and 2: P = (2/2 + 1/1) / 2 = 1, R = (2/3 + 1/2) / 2 = 7/12; F2 = 5PR / (4P + R) = 7/11.
        var s = ChrF.SentenceScore("ab", ["abc"], new ChrFOptions(CharOrder: 2));
        Assert.Equal(100.0 * 7 / 11, s.Score, 9);
    }

    [Fact]
    public void WhitespaceIsIgnoredByDefault() =>
        Assert.Equal(100.0, ChrF.SentenceScore("a b c", ["abc"]).Score, 9);

    [Fact]
    public void BestReferenceIsUsed()
    {
        var one = ChrF.SentenceScore("the cat", ["a dog"]);
        var two = ChrF.SentenceScore("the cat", ["a dog", "the cat"]);
        Assert.True(one.Score < 50);
        Assert.Equal(100.0, two.Score, 9);
        Assert.StartsWith("nrefs:2|", two.Signature);
    }
}
