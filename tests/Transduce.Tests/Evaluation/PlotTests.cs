using System.Buffers.Binary;
using Transduce.Evaluation;

namespace Transduce.Tests.Evaluation.Plot;

public sealed class PlotTests : IDisposable
{
    private static readonly byte[] s_pngSignature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "transduce-plot-tests-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    /// <summary>Checks the PNG signature and the IHDR chunk, and returns the image size it declares.</summary>
    private static (int Width, int Height) ReadPngSize(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        Assert.True(bytes.Length > 33, $"{path} is only {bytes.Length} bytes");
        Assert.Equal(s_pngSignature, bytes[..8]);
        // First chunk: 4-byte length (13), "IHDR", width, height (big-endian), bit depth, colour type, …
        Assert.Equal(13u, BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(8, 4)));
        Assert.Equal("IHDR"u8.ToArray(), bytes[12..16]);
        int width = (int)BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(16, 4));
        int height = (int)BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(20, 4));
        Assert.Equal("IEND"u8.ToArray(), bytes[^8..^4]); // last chunk: length 0, "IEND", CRC
        return (width, height);
    }

    private static float[,] Diagonalish(int targets, int sources)
    {
        var w = new float[targets, sources];
        for (int t = 0; t < targets; t++)
        {
            float sum = 0;
            for (int s = 0; s < sources; s++)
            {
                w[t, s] = MathF.Exp(-Math.Abs(s - t * (sources - 1f) / Math.Max(1, targets - 1)));
                sum += w[t, s];
            }
            for (int s = 0; s < sources; s++)
            {
                w[t, s] /= sum;
            }
        }
        return w;
    }

    [Fact]
    public void OverlaidLossCurvesAreAn800By500PngAndNeedPoints()
    {
        string path = Path.Combine(_dir, "curves", "fp32-vs-bf16.png");
        IReadOnlyList<(double, double)> fp32 = Enumerable.Range(1, 50).Select(u => ((double)u, 9.0 * Math.Exp(-u / 20.0) + 2)).ToList();
        IReadOnlyList<(double, double)> bf16 = Enumerable.Range(1, 50).Select(u => ((double)u, 9.0 * Math.Exp(-u / 20.0) + 2.01)).ToList();

        Plots.SaveLossCurves(path, [("fp32", fp32), ("bf16", bf16)]);

        Assert.Equal((Plots.LossCurveWidth, Plots.LossCurveHeight), ReadPngSize(path));
        Assert.Throws<ArgumentException>(() => Plots.SaveLossCurves(path, []));
        Assert.Throws<ArgumentException>(() => Plots.SaveLossCurves(path, [("fp32", fp32), ("bf16", [])]));
    }

    [Fact]
    public void LossCurveIsAn800By500Png()
    {
        string path = Path.Combine(_dir, "run", "loss.png");
        var train = Enumerable.Range(1, 30).Select(e => ((double)e, 3.0 * Math.Exp(-e / 8.0) + 0.2)).ToList();
        var valid = Enumerable.Range(1, 30).Select(e => ((double)e, 3.0 * Math.Exp(-e / 9.0) + 0.35)).ToList();

        Plots.SaveLossCurve(path, train, valid);

        Assert.Equal((800, 500), ReadPngSize(path));
        Assert.Equal([path], Directory.GetFiles(Path.GetDirectoryName(path)!)); // no temporary file left behind
    }

    [Fact]
    public void LossCurveWithoutValidationReplacesAnExistingFile()
    {
        string path = Path.Combine(_dir, "loss.png");
        Directory.CreateDirectory(_dir);
        File.WriteAllText(path, "not a png");

        Plots.SaveLossCurve(path, [(0, 5.0), (100, 4.0), (200, double.NaN), (300, 2.5)], xLabel: "step");

        Assert.Equal((800, 500), ReadPngSize(path));
    }

    [Fact]
    public void LossCurveNeedsPoints()
    {
        Assert.Throws<ArgumentException>(() => Plots.SaveLossCurve(Path.Combine(_dir, "x.png"), []));
        Assert.False(File.Exists(Path.Combine(_dir, "x.png")));
    }

    [Fact]
    public void HeatmapWithFrenchTokens()
    {
        string path = Path.Combine(_dir, "attention.png");
        string[] source = ["i", "'m", "home", ".", "<eos>"];
        string[] target = ["je", "suis", "chez", "moi", "«", "été", "ça", "l’", "»", ".", "<eos>"];

        Plots.SaveAttentionHeatmap(path, source, target, Diagonalish(target.Length, source.Length));

        var (width, height) = ReadPngSize(path);
        Assert.InRange(width, 400, 4000);
        Assert.InRange(height, 400, 4000);
    }

    [Fact]
    public void HeatmapGrowsWithTokenCounts()
    {
        string small = Path.Combine(_dir, "small.png"), large = Path.Combine(_dir, "large.png");
        Plots.SaveAttentionHeatmap(small, ["a", "b"], ["x"], new float[1, 2]);
        string[] source = [.. Enumerable.Range(0, 40).Select(i => $"mot{i}")];
        string[] target = [.. Enumerable.Range(0, 30).Select(i => $"word{i}")];
        Plots.SaveAttentionHeatmap(large, source, target, Diagonalish(30, 40));

        var s = ReadPngSize(small);
        var l = ReadPngSize(large);
        Assert.Equal((400, 400), s);
        Assert.True(l.Width >= 40 * 20 && l.Height >= 30 * 20, $"large heatmap is only {l.Width}×{l.Height}");
    }

    [Fact]
    public void HeatmapDimensionMismatchThrows()
    {
        string path = Path.Combine(_dir, "bad.png");
        var rows = Assert.Throws<ArgumentException>(() =>
            Plots.SaveAttentionHeatmap(path, ["a", "b", "c"], ["x", "y"], new float[3, 3]));
        Assert.Equal("weights", rows.ParamName);
        Assert.Contains("3 rows for 2 target tokens", rows.Message);

        var cols = Assert.Throws<ArgumentException>(() =>
            Plots.SaveAttentionHeatmap(path, ["a", "b", "c"], ["x", "y"], new float[2, 4]));
        Assert.Contains("4 columns for 3 source tokens", cols.Message);

        Assert.Throws<ArgumentException>(() => Plots.SaveAttentionHeatmap(path, [], ["x"], new float[1, 0]));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void SamplesOfEveryKindAreWholeImagesSizedByTheirContent()
    {
        // TRANSDUCE_PLOT_SAMPLES=/some/dir keeps the images for a person to look at; otherwise they go to a temporary folder.
        string? keep = Environment.GetEnvironmentVariable("TRANSDUCE_PLOT_SAMPLES");
        string dir = string.IsNullOrEmpty(keep) ? _dir : keep;
        string[] source = ["we", "'re", "not", "sure", "it", "'s", "safe", ".", "<eos>"];
        string[] target = ["nous", "ne", "sommes", "pas", "sûrs", "que", "ce", "soit", "sûr", "«", "ça", "»", "…", "été", "français", "l'", ".", "<eos>"];
        Plots.SaveAttentionHeatmap(Path.Combine(dir, "attention.png"), source, target, Diagonalish(target.Length, source.Length));
        var train = Enumerable.Range(1, 30).Select(e => ((double)e, 3.0 * Math.Exp(-e / 8.0) + 0.2)).ToList();
        var valid = Enumerable.Range(1, 30).Select(e => ((double)e, 3.0 * Math.Exp(-e / 9.0) + 0.35)).ToList();
        Plots.SaveLossCurve(Path.Combine(dir, "loss.png"), train, valid);
        string[] longSource = [.. Enumerable.Range(0, 40).Select(i => $"mot{i}")];
        string[] longTarget = [.. Enumerable.Range(0, 30).Select(i => $"word{i}")];
        Plots.SaveAttentionHeatmap(Path.Combine(dir, "attention-long.png"), longSource, longTarget, Diagonalish(30, 40));
        Plots.SaveAttentionHeatmap(Path.Combine(dir, "attention-tiny.png"), ["a", "b"], ["x"], new float[,] { { 0.25f, 0.75f } });

        // Every sample is a whole PNG (signature, header, end chunk) of the size its content calls for.
        Assert.Equal((Plots.LossCurveWidth, Plots.LossCurveHeight), ReadPngSize(Path.Combine(dir, "loss.png")));
        Assert.Equal((Plots.HeatmapMinSize, Plots.HeatmapMinSize), ReadPngSize(Path.Combine(dir, "attention-tiny.png")));
        var sentence = ReadPngSize(Path.Combine(dir, "attention.png"));
        Assert.True(sentence.Width >= Plots.HeatmapMinSize && sentence.Height >= target.Length * 20, $"sentence heatmap is {sentence}");
        var wide = ReadPngSize(Path.Combine(dir, "attention-long.png"));
        Assert.True(wide.Width >= longSource.Length * 20 && wide.Height >= longTarget.Length * 20, $"long heatmap is {wide}");
    }
}
