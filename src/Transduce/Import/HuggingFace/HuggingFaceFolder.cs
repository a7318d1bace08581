using System.Text.Json;
using System.Text.Json.Nodes;

namespace Transduce.Import.HuggingFace;

/// <summary>
/// A folder written by transformers' <c>save_pretrained</c> (or downloaded from the Hub), read as untrusted input: every
/// file is resolved inside the folder (<see cref="File"/>), the weights may be one file or shards behind an index
/// (<see cref="Weights"/>), and the family is told by <c>config.json</c>'s <c>model_type</c> (<see cref="ModelType"/>).
/// </summary>
internal sealed class HuggingFaceFolder
{
    /// <summary>File names transformers writes.</summary>
    public const string ConfigFile = "config.json", GenerationConfigFile = "generation_config.json", TokenizerConfigFile = "tokenizer_config.json",
        SpecialTokensMapFile = "special_tokens_map.json";

    private readonly string[] roots;

    /// <summary>Opens <paramref name="directory"/>; throws <see cref="DirectoryNotFoundException"/> naming <paramref name="family"/> when it is not there.</summary>
    public HuggingFaceFolder(string directory, string family)
    {
        if (!System.IO.Directory.Exists(directory))
            throw new DirectoryNotFoundException($"{directory}: {family} folder not found");
        Directory = Path.GetFullPath(directory);
        Family = family;
        // Files may resolve inside the folder, or — the Hub cache's layout, snapshots/<revision>/file → ../../blobs/<hash> —
        // into the blobs folder of the same cached repository.
        string real = RealPath(Directory);
        var parent = System.IO.Directory.GetParent(real);
        roots = parent is { Name: "snapshots", Parent: { } repository }
            ? [real, Path.Combine(repository.FullName, "blobs")]
            : [real];
    }

    /// <summary>The folder, as a full path.</summary>
    public string Directory { get; }

    /// <summary>The family named in messages ("NLLB / M2M100", "MarianMT", …).</summary>
    public string Family { get; }

    /// <summary>
    /// The path of <paramref name="name"/> (a file name, or a relative path a file of the folder gives) inside the folder.
    /// A name that is absolute, climbs out with <c>..</c>, or is a symlink whose target lies outside the folder throws
    /// <see cref="InvalidDataException"/> naming <paramref name="namedBy"/> (the file and field that gave the name) when given.
    /// The file need not exist.
    /// </summary>
    public string File(string name, string? namedBy = null)
    {
        string who = namedBy ?? Path.Combine(Directory, name);
        if (string.IsNullOrEmpty(name) || Path.IsPathRooted(name) || name.Contains('\0'))
            throw new InvalidDataException($"{who}: '{name}' is not a file name inside the folder");
        string full = Path.GetFullPath(Path.Combine(Directory, name));
        if (!Inside(full, Directory))
            throw new InvalidDataException($"{who}: '{name}' points outside the folder {Directory}");
        if (Path.Exists(full))
        {
            string real = RealPath(full);
            if (!roots.Any(root => Inside(real, root)))
                throw new InvalidDataException($"{who}: '{name}' is a link to {real}, outside the folder {Directory}");
        }
        return full;
    }

    /// <summary>Reads the folder's JSON file <paramref name="name"/> (<see cref="HfJsonFile"/>).</summary>
    public HfJsonFile Json(string name, bool required) => new(File(name), required);

    /// <summary>The folder's <c>config.json</c> (required).</summary>
    public HfJsonFile Config() => Json(ConfigFile, required: true);

    /// <summary>The weights (one file or shards), found as transformers looks for them (<see cref="HuggingFaceWeights.Find"/>).</summary>
    public HuggingFaceWeights Weights() => HuggingFaceWeights.Find(this);

    /// <summary>
    /// <c>model_type</c> of <paramref name="directory"/>'s <c>config.json</c>, or null when there is no readable one: a cheap
    /// test for <see cref="Checkpoints.ForeignFormats"/> recognisers (errors are left to the loader).
    /// </summary>
    public static string? ModelType(string directory)
    {
        string config = Path.Combine(directory, ConfigFile);
        if (!System.IO.File.Exists(config)) return null;
        try
        {
            return JsonNode.Parse(Text.StrictUtf8.ReadText(config)) is JsonObject o
                && o["model_type"] is JsonValue v && v.TryGetValue<string>(out var type) ? type : null;
        }
        catch (Exception e) when (e is JsonException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static bool Inside(string path, string root)
    {
        string prefix = Path.EndsInDirectorySeparator(root) ? root : root + Path.DirectorySeparatorChar;
        return path.StartsWith(prefix, StringComparison.Ordinal) || path == root;
    }

    /// <summary><paramref name="path"/> with every symbolic link on the way resolved.</summary>
    private static string RealPath(string path)
    {
        string full = Path.GetFullPath(path);
        string? parent = Path.GetDirectoryName(full);
        string resolvedParent = parent is null ? full : RealPath(parent);
        string here = parent is null ? full : Path.Combine(resolvedParent, Path.GetFileName(full));
        FileSystemInfo info = System.IO.Directory.Exists(here) ? new DirectoryInfo(here) : new FileInfo(here);
        if (info.LinkTarget is null) return here;
        var target = info.ResolveLinkTarget(returnFinalTarget: true);
        return target is null ? here : RealPath(target.FullName);
    }
}
