using System.Reflection;
using System.Text.RegularExpressions;
using Transduce.Serving;
using Transduce.Training;

namespace Transduce.Tests;

/// <summary>docs/api.md lists exactly the public types of the library and of the service package, and says how many there are.</summary>
public sealed class ApiSurfaceTests
{
    private static readonly string Doc = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "docs", "api.md"));

    private const string OtherPackages = "## The other packages", ServingSection = "### `Transduce.Serving`", AuthorSection = "## Writing your own model";

    /// <summary>The types a table of <paramref name="text"/> lists (first column), generic ones as <c>Name&lt;T&gt;</c>.</summary>
    private static List<string> Listed(string text) =>
        Regex.Matches(text, @"^\| `([A-Za-z0-9]+(?:<[A-Za-z0-9, ]+>)?)` \|", RegexOptions.Multiline).Select(m => m.Groups[1].Value).Order().ToList();

    private static string Shown(Type t) => t.IsGenericTypeDefinition
        ? $"{t.Name[..t.Name.IndexOf('`')]}<{string.Join(", ", t.GetGenericArguments().Select(a => a.Name))}>"
        : t.Name;

    private static List<string> Exported(Assembly assembly) =>
        assembly.GetExportedTypes().Where(t => !t.IsNested).Select(Shown).Order().ToList();

    private static string Section(string start, string? end)
    {
        int from = Doc.IndexOf(start, StringComparison.Ordinal);
        Assert.True(from >= 0, $"docs/api.md has no '{start}'");
        int to = end is null ? -1 : Doc.IndexOf(end, from + start.Length, StringComparison.Ordinal);
        return to < 0 ? Doc[from..] : Doc[from..to];
    }

    [Fact]
    public void DocsApiListsEveryPublicTypeAndNoOther()
    {
        string library = Doc[..Doc.IndexOf(OtherPackages, StringComparison.Ordinal)];
        var exported = Exported(typeof(RunConfig).Assembly);
        Assert.Equal(exported, Listed(library));
        Assert.Contains($"**{exported.Count} public types**", Doc);
        // The surface an application uses stays well under half of the former 97; the model-author types are counted apart.
        int authoring = Listed(Section(AuthorSection, "\n## ")).Count;
        Assert.True(authoring > 0, "the model-author types are listed under their own section");
        Assert.Contains($"**{authoring} of them**", Doc);
        Assert.True(exported.Count - authoring < 97 / 2, $"{exported.Count - authoring} public types besides the model-author ones: the surface is to stay well under half of the former 97");
    }

    [Fact]
    public void DocsApiListsEveryPublicTypeOfTheServicePackage()
    {
        var exported = Exported(typeof(ServingApp).Assembly);
        Assert.Equal(exported, Listed(Section(ServingSection, "\n### ")));
        Assert.Contains($"**{exported.Count} public types**: ", Section(ServingSection, "\n### "));
    }

    [Fact]
    public void EveryAbstractMemberOfAPublicBaseCanBeOverriddenFromAnotherAssembly()
    {
        // An internal (or private protected) abstract member would make a public abstract class impossible to derive from
        // outside the library: Encoder, Decoder<TState>, EncoderDecoder, IncrementalDecoding and ModelConfig are meant to be.
        var sealedOff = typeof(RunConfig).Assembly.GetExportedTypes()
            .Where(t => t.IsClass && t.IsAbstract && !t.IsSealed)
            .SelectMany(t => t.GetMethods(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic).Select(m => (Type: t, Method: m)))
            .Where(x => x.Method.IsAbstract && !(x.Method.IsPublic || x.Method.IsFamily || x.Method.IsFamilyOrAssembly))
            .Select(x => $"{x.Type.Name}.{x.Method.Name}").ToList();
        Assert.Empty(sealedOff);
        Assert.Contains(typeof(Transduce.Architecture.Encoder), typeof(RunConfig).Assembly.GetExportedTypes());
    }

    [Theory]
    [InlineData(typeof(RunConfig))]
    [InlineData(typeof(ServingApp))]
    public void PublicClassesAreSealedOrStaticUnlessMeantAsBases(Type inAssembly)
    {
        // EncoderDecoder<TState> composes an encoder and a decoder as it is, and is the base of every model that builds its own.
        var open = inAssembly.Assembly.GetExportedTypes()
            .Where(t => t.IsClass && !t.IsSealed && !t.IsAbstract && t != typeof(Transduce.Architecture.EncoderDecoder<>))
            .Select(t => t.FullName).ToList();
        Assert.Empty(open);
    }
}
