using System.Text;
using ScottPlot;
using SkiaSharp;
using Transduce.IO;
using Transduce.Checkpoints;

namespace Transduce.Evaluation;

/// <summary>
/// PNG plots for people to look at: training loss curves and cross-attention heatmaps, drawn with ScottPlot.
/// Files are written atomically (rendered in memory, written to a temporary file beside the target, then renamed over it).
/// </summary>
/// <remarks>
/// Text is drawn in <see cref="PreferredFontFamily"/> (Debian package <c>fonts-dejavu-core</c>), which covers French
/// (é, ç, ’, «, », …). Another family is used only when that one is missing or lacks a glyph. On Linux SkiaSharp finds
/// fonts under <c>/usr/share/fonts</c>; a font file elsewhere can be named with the <see cref="FontFileVariable"/>
/// environment variable. With no font at all the plots cannot show their labels, so they throw instead of writing
/// a picture without text.
/// </remarks>
public static class Plots
{
    /// <summary>The font family used for all text when it is installed: <c>DejaVu Sans</c>.</summary>
    public const string PreferredFontFamily = "DejaVu Sans";

    /// <summary>Environment variable that may name a <c>.ttf</c>/<c>.otf</c> file to draw text with instead of the system fonts.</summary>
    public const string FontFileVariable = "TRANSDUCE_PLOT_FONT";

    /// <summary>Width of a loss-curve image in pixels.</summary>
    public const int LossCurveWidth = 800;

    /// <summary>Height of a loss-curve image in pixels.</summary>
    public const int LossCurveHeight = 500;

    /// <summary>Smallest width and height of an attention heatmap image in pixels.</summary>
    public const int HeatmapMinSize = 400;

    /// <summary>Largest width or height of an attention heatmap image in pixels; cells shrink to stay within it.</summary>
    public const int HeatmapMaxSize = 4000;

    private const string FileFontFamily = "Transduce plot font";
    private const float CellPixels = 36;
    private const float MinCellPixels = 14;
    private const float TickFontSize = 14;
    private static readonly Lock s_fontLock = new();
    private static bool s_fontFileRegistered;

    /// <summary>Writes a line plot of training (and optionally validation) loss as an 800×500 PNG.</summary>
    /// <param name="path">The PNG file to write (replaced if it exists; its directory is created).</param>
    /// <param name="train">Training loss points (x, e.g. epoch or step, and loss); at least one.</param>
    /// <param name="validation">Validation loss points, drawn as a second line with a legend when given and not empty.</param>
    /// <param name="xLabel">Label of the horizontal axis.</param>
    /// <param name="title">Title above the plot.</param>
    /// <remarks>Points whose x or loss is NaN or infinite cannot be placed and are left out.</remarks>
    /// <exception cref="ArgumentException"><paramref name="train"/> is empty or <paramref name="path"/> is blank.</exception>
    /// <exception cref="InvalidOperationException">No font is available to draw the labels with.</exception>
    public static void SaveLossCurve(
        string path,
        IReadOnlyList<(double X, double Loss)> train,
        IReadOnlyList<(double X, double Loss)>? validation = null,
        string xLabel = "epoch",
        string title = "training loss")
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(xLabel);
        ArgumentNullException.ThrowIfNull(title);
        if (train.Count == 0)
        {
            throw new ArgumentException("The training loss curve needs at least one point.", nameof(train));
        }

        var curves = new List<(string Name, IReadOnlyList<(double X, double Loss)> Points)> { ("train", train) };
        if (validation is { Count: > 0 }) curves.Add(("validation", validation));
        DrawCurves(path, curves, xLabel, title, legend: curves.Count > 1);
    }

    /// <summary>Writes several named loss curves overlaid on one 800×500 PNG, with a legend (e.g. one run in fp32 and in bf16).</summary>
    /// <param name="path">The PNG file to write (replaced if it exists; its directory is created).</param>
    /// <param name="curves">Named curves of (x, loss) points; at least one, each with at least one point.</param>
    /// <param name="xLabel">Label of the horizontal axis.</param>
    /// <param name="title">Title above the plot.</param>
    /// <remarks>Points whose x or loss is NaN or infinite are left out. Curves take the palette's colours in order.</remarks>
    /// <exception cref="ArgumentException">No curve, an empty curve, or a blank <paramref name="path"/>.</exception>
    /// <exception cref="InvalidOperationException">No font is available to draw the labels with.</exception>
    public static void SaveLossCurves(
        string path,
        IReadOnlyList<(string Name, IReadOnlyList<(double X, double Loss)> Points)> curves,
        string xLabel = "update",
        string title = "training loss")
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(curves);
        if (curves.Count == 0 || curves.Any(c => c.Points.Count == 0))
        {
            throw new ArgumentException("Every loss curve needs at least one point, and there must be at least one curve.", nameof(curves));
        }

        DrawCurves(path, curves, xLabel, title, legend: true);
    }

    private static void DrawCurves(string path, IReadOnlyList<(string Name, IReadOnlyList<(double X, double Loss)> Points)> curves,
        string xLabel, string title, bool legend)
    {
        string font = ChooseFontFamily(title + xLabel + "loss 0123456789.-e+" + string.Concat(curves.Select(c => c.Name)));
        using var plot = new Plot();
        Color[] palette = [Colors.C0, Colors.C1, Colors.C2, Colors.C3, Colors.C4, Colors.C5, Colors.C6, Colors.C7];
        for (int i = 0; i < curves.Count; i++)
        {
            AddCurve(plot, curves[i].Points, curves[i].Name, palette[i % palette.Length]);
        }

        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel("loss");
        if (legend)
        {
            plot.ShowLegend(Alignment.UpperRight);
        }

        plot.Font.Set(font);
        byte[] png = plot.GetImageBytes(LossCurveWidth, LossCurveHeight, ImageFormat.Png);
        AtomicFile.Write(path, stream => stream.Write(png));
    }

    /// <summary>
    /// Writes a heatmap of attention weights for one sentence as a PNG: source tokens along the bottom (rotated when
    /// they do not fit a cell), target tokens down the left side (first token at the top), and a colour bar for 0–1.
    /// The image grows with the token counts (at least <see cref="HeatmapMinSize"/> pixels a side).
    /// </summary>
    /// <param name="path">The PNG file to write (replaced if it exists; its directory is created).</param>
    /// <param name="sourceTokens">Source tokens, one per column.</param>
    /// <param name="targetTokens">Target tokens, one per row.</param>
    /// <param name="weights">Attention weights indexed <c>[targetIndex, sourceIndex]</c>, expected in [0, 1]
    /// (values outside are shown with the end colours; NaN cells are grey).</param>
    /// <param name="title">Title above the heatmap.</param>
    /// <exception cref="ArgumentException">A token list is empty, the dimensions of <paramref name="weights"/> differ from
    /// the token counts, or <paramref name="path"/> is blank.</exception>
    /// <exception cref="InvalidOperationException">No font is available to draw the labels with.</exception>
    public static void SaveAttentionHeatmap(
        string path,
        IReadOnlyList<string> sourceTokens,
        IReadOnlyList<string> targetTokens,
        float[,] weights,
        string title = "cross-attention")
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(sourceTokens);
        ArgumentNullException.ThrowIfNull(targetTokens);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(title);
        int sources = sourceTokens.Count, targets = targetTokens.Count;
        if (sources == 0)
        {
            throw new ArgumentException("The attention heatmap needs at least one source token.", nameof(sourceTokens));
        }
        if (targets == 0)
        {
            throw new ArgumentException("The attention heatmap needs at least one target token.", nameof(targetTokens));
        }
        if (weights.GetLength(0) != targets || weights.GetLength(1) != sources)
        {
            throw new ArgumentException(
                $"weights is [{weights.GetLength(0)}, {weights.GetLength(1)}] but must be [targetTokens.Count, sourceTokens.Count] " +
                $"= [{targets}, {sources}]" +
                (weights.GetLength(0) != targets ? $"; {weights.GetLength(0)} rows for {targets} target tokens" : "") +
                (weights.GetLength(1) != sources ? $"; {weights.GetLength(1)} columns for {sources} source tokens" : "") + ".",
                nameof(weights));
        }

        string[] sourceLabels = [.. sourceTokens.Select(t => t ?? "")];
        string[] targetLabels = [.. targetTokens.Select(t => t ?? "")];
        string font = ChooseFontFamily(
            title + "source target 0123456789." + string.Concat(sourceLabels) + string.Concat(targetLabels));

        var intensities = new double[targets, sources];
        for (int t = 0; t < targets; t++)
        {
            for (int s = 0; s < sources; s++)
            {
                intensities[t, s] = weights[t, s];
            }
        }

        using var plot = new Plot();
        var heatmap = plot.Add.Heatmap(intensities);
        heatmap.Colormap = new ScottPlot.Colormaps.Viridis();
        heatmap.ManualRange = new ScottPlot.Range(0, 1);
        // ScottPlot's default placement: unit cells centred on integers, column s at x = s and row t at
        // y = T − 1 − t, so row 0 (the first target token) is at the top. (Setting Extent breaks single-row maps.)
        var colorBar = plot.Add.ColorBar(heatmap);
        colorBar.Label = "weight";
        colorBar.Axis.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            [0, 0.25, 0.5, 0.75, 1], ["0", "0.25", "0.5", "0.75", "1"]);

        double[] xs = [.. Enumerable.Range(0, sources).Select(s => (double)s)];
        double[] ys = [.. Enumerable.Range(0, targets).Select(t => (double)(targets - 1 - t))];
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(xs, sourceLabels);
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ys, targetLabels);
        plot.Axes.SetLimits(-0.5, sources - 0.5, -0.5, targets - 0.5);
        plot.HideGrid();
        plot.Title(title);
        plot.XLabel("source");
        plot.YLabel("target");
        plot.Font.Set(font);
        plot.Axes.Bottom.TickLabelStyle.FontSize = TickFontSize;
        plot.Axes.Left.TickLabelStyle.FontSize = TickFontSize;

        float widestSource, widestTarget, lineHeight;
        using (Paint paint = Paint.NewDisposablePaint())
        {
            widestSource = sourceLabels.Max(l => plot.Axes.Bottom.TickLabelStyle.Measure(l, paint).Width);
            widestTarget = targetLabels.Max(l => plot.Axes.Left.TickLabelStyle.Measure(l, paint).Width);
            lineHeight = plot.Axes.Bottom.TickLabelStyle.Measure("Ég", paint).Height;
        }

        // Fixed space around the cells: title, axis labels, tick labels, colour bar and padding.
        float fixedWidth = widestTarget + 180;
        float fixedHeightWithoutTicks = 130;
        float cell = CellPixels;
        bool rotate = widestSource + 6 > cell;
        float bottomTicks = rotate ? widestSource + 12 : lineHeight + 12;
        float fixedHeight = fixedHeightWithoutTicks + bottomTicks;
        cell = Math.Min(cell, (HeatmapMaxSize - fixedWidth) / sources);
        cell = Math.Min(cell, (HeatmapMaxSize - fixedHeight) / targets);
        cell = Math.Max(cell, MinCellPixels);
        if (!rotate && widestSource + 6 > cell)
        {
            rotate = true;
            bottomTicks = widestSource + 12;
            fixedHeight = fixedHeightWithoutTicks + bottomTicks;
        }

        if (rotate)
        {
            plot.Axes.Bottom.TickLabelStyle.Rotation = -90;
            plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleRight;
            plot.Axes.Bottom.MinimumSize = bottomTicks + 30;
        }

        int width = Math.Clamp((int)Math.Ceiling(fixedWidth + cell * sources), HeatmapMinSize, HeatmapMaxSize);
        int height = Math.Clamp((int)Math.Ceiling(fixedHeight + cell * targets), HeatmapMinSize, HeatmapMaxSize);
        byte[] png = plot.GetImageBytes(width, height, ImageFormat.Png);
        AtomicFile.Write(path, stream => stream.Write(png));
    }

    private static void AddCurve(Plot plot, IReadOnlyList<(double X, double Loss)> points, string label, Color color)
    {
        var finite = points.Where(p => double.IsFinite(p.X) && double.IsFinite(p.Loss)).ToArray();
        var curve = plot.Add.Scatter(finite.Select(p => p.X).ToArray(), finite.Select(p => p.Loss).ToArray(), color);
        curve.LegendText = label;
        curve.LineWidth = 2;
        curve.MarkerSize = finite.Length <= 60 ? 6 : 0;
    }

    /// <summary>
    /// The font family to draw <paramref name="text"/> with: the file named by <see cref="FontFileVariable"/> if set,
    /// else <see cref="PreferredFontFamily"/> if installed, else the system default; then, if that family lacks a glyph
    /// of <paramref name="text"/>, a system family that has it.
    /// </summary>
    private static string ChooseFontFamily(string text)
    {
        string? family = null;
        string? file = Environment.GetEnvironmentVariable(FontFileVariable);
        if (!string.IsNullOrWhiteSpace(file))
        {
            if (!File.Exists(file))
            {
                throw new InvalidOperationException($"{FontFileVariable} names '{file}', which does not exist.");
            }
            lock (s_fontLock)
            {
                if (!s_fontFileRegistered)
                {
                    Fonts.AddFontFile(FileFontFamily, file, bold: false, italic: false);
                    Fonts.AddFontFile(FileFontFamily, file, bold: true, italic: false);
                    s_fontFileRegistered = true;
                }
            }
            family = FileFontFamily;
        }
        else if (IsInstalled(PreferredFontFamily))
        {
            family = PreferredFontFamily;
        }
        else
        {
            using SKTypeface fallback = SKFontManager.Default.MatchFamily(null) ?? SKTypeface.Default;
            if (!string.IsNullOrEmpty(fallback.FamilyName))
            {
                family = fallback.FamilyName;
            }
        }

        if (family is null)
        {
            throw new InvalidOperationException(
                "No font is available to draw plot labels with. Install one under /usr/share/fonts " +
                $"(on Debian: apt-get install fonts-dejavu-core, which provides {PreferredFontFamily}) " +
                $"or set {FontFileVariable} to a .ttf file.");
        }

        if (family != FileFontFamily)
        {
            int missing = FirstMissingCodePoint(family, text);
            if (missing >= 0 && SKFontManager.Default.MatchCharacter(missing) is { } other)
            {
                using (other)
                {
                    if (!string.IsNullOrEmpty(other.FamilyName))
                    {
                        family = other.FamilyName;
                    }
                }
            }
        }
        return family;
    }

    private static bool IsInstalled(string family)
    {
        using SKTypeface? typeface = SKFontManager.Default.MatchFamily(family);
        return typeface is not null && string.Equals(typeface.FamilyName, family, StringComparison.OrdinalIgnoreCase);
    }

    private static int FirstMissingCodePoint(string family, string text)
    {
        using SKTypeface? typeface = SKFontManager.Default.MatchFamily(family);
        if (typeface is null)
        {
            return -1;
        }
        foreach (Rune rune in text.EnumerateRunes())
        {
            if (Rune.IsWhiteSpace(rune) || Rune.IsControl(rune))
            {
                continue;
            }
            if (typeface.GetGlyph(rune.Value) == 0)
            {
                return rune.Value;
            }
        }
        return -1;
    }
}
