using Spectre.Console;
using Transduce.Data;

namespace Transduce.Cli.Commands;

/// <summary>Turns <c>--data</c> into a local path: an existing file or folder as given, or a known corpus name fetched into the cache.</summary>
internal static class CorpusLocator
{
    public static string Resolve(string data)
    {
        if (File.Exists(data) || Directory.Exists(data)) return data;
        if (DatasetHub.Find(data) is { } entry)
        {
            var hub = new DatasetHub(DatasetHub.DefaultCacheDirectory);
            Console.Error.WriteLine($"corpus '{entry.Name}': using the cache in {DatasetHub.DefaultCacheDirectory} (downloads {entry.Url} if needed)");
            string folder = hub.EnsureAsync(entry).GetAwaiter().GetResult();
            return Path.Combine(folder, entry.MainFile);
        }
        throw new FileNotFoundException($"{data}: no such file or folder, and not a known corpus name (known: fra-eng)");
    }
}
