using System.Text.Json.Nodes;
using Transduce.Data;

namespace Transduce.Tests.Data;

/// <summary>The training corpus filters: identical sides, exact repeats, length and length ratio, each counted.</summary>
public sealed class CorpusFiltersTests : IDisposable
{
    private readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    private static SentencePair P(string s, string t, int line) => new(s, t, line);

    [Fact]
    public void TextFiltersDropIdenticalSidesAndRepeatsKeepingOrder()
    {
        SentencePair[] pairs = [P("Go.", "Va !", 1), P("OK.", "OK.", 2), P("Go.", "Va !", 3), P("Go.", "Bouge !", 4), P("Hi.", "Salut.", 5), P("Hi.", "Salut.", 6)];
        var kept = CorpusFilters.ByText(pairs, identical: true, duplicates: true, out var counts);
        Assert.Equal([1, 4, 5], kept.Select(p => p.LineNumber));
        Assert.Equal(new CorpusFilterCounts(Identical: 1, Duplicates: 2), counts);
        Assert.Same(pairs, CorpusFilters.ByText(pairs, identical: false, duplicates: false, out _));
        Assert.Equal(5, CorpusFilters.ByText(pairs, identical: true, duplicates: false, out _).Count);
    }

    [Fact]
    public void LengthFiltersCountTokensOfEitherSide()
    {
        EncodedPair[] pairs = [new([1, 2, 3], [4, 5]), new([1, 2, 3, 4, 5, 6], [7]), new([1], [2, 3, 4, 5]), new([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])];
        var kept = CorpusFilters.ByLength(pairs, maxLength: 5, maxRatio: 3.0, out var counts);
        Assert.Equal([pairs[0], pairs[3]], kept);
        Assert.Equal(new CorpusFilterCounts(TooLong: 1, Ratio: 1), counts);
    }

    [Fact]
    public void TrainCountsWhatEachFilterDroppedAndSavesTheFilters()
    {
        string data = _tmp.WriteText("pairs.tsv",
            "Go.\tVa !\nOK.\tOK.\nGo.\tVa !\nI lost.\tJ'ai perdu.\nHi.\tSalut.\n" +
            "This one is far too long for the limit.\tCelle-ci est beaucoup trop longue pour la limite.\nThanks.\tMerci.\n");
        string run = Path.Combine(_tmp.Path, "run");
        var r = Cli.CliTests.Run(null, "train", "--data", data, "--out", run, "--model", "gru", "--embed", "8", "--hidden", "8",
            "--layers", "1", "--epochs", "1", "--batch-size", "2", "--threads", "1",
            "--drop-identical", "--drop-duplicates", "--filter-max-length", "6", "--filter-length-ratio", "3");
        Assert.True(r.Code == 0, r.Err + r.Out);
        string output = r.Out + r.Err;
        Assert.Contains("filters: dropped 1 pairs with identical sides, 1 repeated pairs; 5 of 7 left", output);
        Assert.Contains("filters: dropped 1 pairs with a side over 6 tokens, 0 with a length ratio over 3; 4 of 5 left", output);
        var data2 = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "train.json")))!["data"]!;
        Assert.Equal(6, (int)data2["max_length"]!);
        Assert.True((bool)data2["drop_duplicates"]!);

        var bad = Cli.CliTests.Run(null, "train", "--data", data, "--out", Path.Combine(_tmp.Path, "bad"), "--filter-length-ratio", "0.5");
        Assert.NotEqual(0, bad.Code);
        Assert.Contains("'data.max_length_ratio' must be a number of at least 1", bad.Err);
    }
}
