using System.Text.RegularExpressions;
using Transduce.Training;

namespace Transduce.Tests;

/// <summary>docs/api.md lists exactly the library's public types, and says how many there are.</summary>
public sealed class ApiSurfaceTests
{
    [Fact]
    public void DocsApiListsEveryPublicTypeAndNoOther()
    {
        string doc = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "docs", "api.md"));
        string library = doc[..doc.IndexOf("## The other packages", StringComparison.Ordinal)];
        var listed = Regex.Matches(library, @"^\| `([A-Za-z0-9]+)` \|", RegexOptions.Multiline).Select(m => m.Groups[1].Value).Order().ToList();
        var exported = typeof(RunConfig).Assembly.GetExportedTypes().Where(t => !t.IsNested).Select(t => t.Name).Order().ToList();
        Assert.Equal(exported, listed);
        Assert.Contains($"**{exported.Count} public types**", doc);
        Assert.True(exported.Count < 97 / 2, $"{exported.Count} public types: the surface is to stay well under half of the former 97");
    }

    [Fact]
    public void PublicClassesAreSealedOrStaticUnlessMeantAsBases()
    {
        var open = typeof(RunConfig).Assembly.GetExportedTypes()
            .Where(t => t.IsClass && !t.IsSealed && !t.IsAbstract)
            .Select(t => t.FullName).ToList();
        Assert.Empty(open);
    }
}
