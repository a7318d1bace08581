using System.Text.RegularExpressions;

namespace Transduce.Tests;

/// <summary>
/// The library's folders depend on each other without a cycle, and docs/architecture.md lists exactly which depends on
/// which. A folder is a namespace (<c>Transduce.Models</c>, with its sub-namespaces); folder A depends on folder B when a
/// file of A names a type declared in B that the file can see (through a <c>using</c> of B's namespace, or qualified).
/// </summary>
public sealed class FolderDependencyTests
{
    private static readonly string Source = Path.Combine(TestPaths.RepoRoot, "src", "Transduce");

    private static string Code(string path)
    {
        string text = File.ReadAllText(path);
        text = Regex.Replace(text, @"/\*.*?\*/", " ", RegexOptions.Singleline);
        text = Regex.Replace(text, @"//.*", "");
        return Regex.Replace(text, "\"(?:[^\"\\\\\\n]|\\\\.)*\"", "\"\"");   // string literals
    }

    /// <summary>Folder → the folders it depends on, with one example each (type@file).</summary>
    internal static SortedDictionary<string, SortedDictionary<string, string>> Dependencies()
    {
        var files = Directory.GetDirectories(Source)
            .Where(d => Path.GetFileName(d) is not ("bin" or "obj" or "Properties"))
            .SelectMany(d => Directory.GetFiles(d, "*.cs", SearchOption.AllDirectories).Select(f => (Folder: Path.GetFileName(d), Path: f, Code: Code(f))))
            .ToList();
        // Types other folders may see: public or internal, not private nested ones. A name declared in two folders is left out.
        var declared = new Dictionary<string, HashSet<string>>();
        foreach (var (folder, _, code) in files)
            foreach (Match m in Regex.Matches(code,
                         @"\b(?:public|internal)\s+(?:(?:static|sealed|abstract|readonly|partial|unsafe|ref)\s+)*(?:class|record(?:\s+struct)?|struct|interface|enum)\s+(\w+)"))
                (declared.TryGetValue(m.Groups[1].Value, out var at) ? at : declared[m.Groups[1].Value] = []).Add(folder);
        var owner = declared.Where(kv => kv.Value.Count == 1).ToDictionary(kv => kv.Key, kv => kv.Value.Single());
        var result = new SortedDictionary<string, SortedDictionary<string, string>>(StringComparer.Ordinal);
        foreach (var (folder, path, code) in files)
        {
            var visible = Regex.Matches(code, @"^\s*using\s+(?:static\s+)?Transduce\.(\w+)", RegexOptions.Multiline)
                .Select(m => m.Groups[1].Value).ToHashSet();
            foreach (Match m in Regex.Matches(code, @"\b[A-Z]\w*\b"))
            {
                string name = m.Value;
                if (!owner.TryGetValue(name, out var other) || other == folder) continue;
                bool seen = visible.Contains(other) || Regex.IsMatch(code, $@"\b{other}\.(?:\w+\.)*{name}\b");
                if (!seen) continue;
                if (!result.TryGetValue(folder, out var targets)) result[folder] = targets = new(StringComparer.Ordinal);
                targets.TryAdd(other, $"{name}@{Path.GetRelativePath(Source, path)}");
            }
        }
        return result;
    }

    [Fact]
    public void FoldersHaveNoCycle()
    {
        var dependencies = Dependencies();
        // Depth-first search; a folder met again while still on the path closes a cycle.
        var state = new Dictionary<string, int>();
        var path = new List<string>();
        void Visit(string folder)
        {
            state[folder] = 1;
            path.Add(folder);
            foreach (var (next, example) in dependencies.GetValueOrDefault(folder) ?? new())
            {
                if (state.GetValueOrDefault(next) == 1)
                {
                    var cycle = path.Skip(path.IndexOf(next)).Append(next);
                    Assert.Fail($"folder cycle: {string.Join(" → ", cycle)} ({folder} → {next} through {example})");
                }
                if (state.GetValueOrDefault(next) == 0) Visit(next);
            }
            path.RemoveAt(path.Count - 1);
            state[folder] = 2;
        }
        foreach (var folder in dependencies.Keys)
            if (state.GetValueOrDefault(folder) == 0) Visit(folder);
    }

    [Fact]
    public void ArchitectureDocListsTheFolderDependencies()
    {
        string doc = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "docs", "architecture.md"));
        var listed = Regex.Matches(doc, @"^- `(\w+)` → (.+)$", RegexOptions.Multiline)
            .ToDictionary(m => m.Groups[1].Value, m => Regex.Matches(m.Groups[2].Value, @"`(\w+)`").Select(t => t.Groups[1].Value).Order(StringComparer.Ordinal).ToList());
        var actual = Dependencies().ToDictionary(kv => kv.Key, kv => kv.Value.Keys.ToList());
        string Show(Dictionary<string, List<string>> d) =>
            string.Join("\n", d.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"- `{kv.Key}` → {string.Join(", ", kv.Value.Select(v => $"`{v}`"))}"));
        Assert.True(Show(listed) == Show(actual), $"docs/architecture.md's folder dependencies should read:\n{Show(actual)}");
    }
}
