namespace Transduce.Tests;

/// <summary>Well-known locations for tests: the repository root and the shared data directory beside it.</summary>
internal static class TestPaths
{
    private static readonly Lazy<string> s_repoRoot = new(FindRepoRoot);

    /// <summary>The directory containing <c>Transduce.sln</c>, found by walking up from the test binaries.</summary>
    public static string RepoRoot => s_repoRoot.Value;

    /// <summary><c>../shared/data</c> relative to <see cref="RepoRoot"/> (normalised, may not exist).</summary>
    public static string SharedData => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "data"));

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Transduce.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException(
            $"Could not find the repository root (a directory containing Transduce.sln) above {AppContext.BaseDirectory}.");
    }
}
