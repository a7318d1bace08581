using System.Text.RegularExpressions;

namespace Transduce.Tests;

/// <summary>The README's C# is the code CI builds (samples/), to the character, so it cannot rot.</summary>
public sealed class ReadmeSamplesTests
{
    [Fact]
    public void UseFromCSharpShowsTheSamplesVerbatim()
    {
        string readme = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "README.md"));
        int section = readme.IndexOf("\n## Use from C#\n", StringComparison.Ordinal);
        Assert.True(section >= 0, "README.md has no '## Use from C#' section");
        var blocks = Regex.Matches(readme[section..], "```csharp\n(.*?)```", RegexOptions.Singleline).Select(m => m.Groups[1].Value).ToList();
        Assert.True(blocks.Count >= 2, "the section needs the quickstart and the translate example");
        Assert.Equal(File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "samples", "Quickstart", "Program.cs")), blocks[0]);
        Assert.Equal(File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "samples", "TranslateFile", "Program.cs")), blocks[1]);
    }
}
