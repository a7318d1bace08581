using System.IO.Compression;
using System.Security.Cryptography;

namespace Transduce.Data;

/// <summary>A downloadable corpus: a zip archive with a known SHA-1.</summary>
/// <param name="Name">Short name, also used for the cached archive (<c>Name.zip</c>) and its extraction folder.</param>
/// <param name="Url">Where the zip archive is downloaded from.</param>
/// <param name="Sha1">Expected SHA-1 of the archive, as 40 hexadecimal digits.</param>
/// <param name="MainFile">Path of the main file inside the archive (and so inside the extraction folder), with '/' separators.</param>
internal sealed record DatasetEntry(string Name, Uri Url, string Sha1, string MainFile);

/// <summary>
/// Downloads known corpora once into a cache directory, verifies their SHA-1 and extracts them.
/// Files appear under their final names only when complete: downloads go to a temporary file that is
/// renamed into place after verification, and archives are extracted into a temporary folder that is
/// then renamed.
/// </summary>
internal sealed class DatasetHub
{
    private static readonly Lazy<HttpClient> SharedHttp = new(() => new HttpClient());

    private static readonly DatasetEntry[] Registry =
    [
        new("fra-eng", new Uri("http://d2l-data.s3-accelerate.amazonaws.com/fra-eng.zip"),
            "94646ad1522d915e7b0f9296181140edcf86a4f5", "fra-eng/fra.txt"),
    ];

    private readonly HttpClient _http;

    /// <summary>Creates a hub over <paramref name="cacheDirectory"/> (created on first use).</summary>
    /// <param name="cacheDirectory">Where archives and extracted folders are kept.</param>
    /// <param name="http">The client to download with; <c>null</c> for a shared default client.</param>
    public DatasetHub(string cacheDirectory, HttpClient? http = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(cacheDirectory);
        CacheDirectory = Path.GetFullPath(cacheDirectory);
        _http = http ?? SharedHttp.Value;
    }

    /// <summary>The cache directory of this hub.</summary>
    public string CacheDirectory { get; }

    /// <summary>
    /// The default cache directory: <c>$TRANSDUCE_CACHE</c> if set, else <c>$XDG_CACHE_HOME/transduce</c>,
    /// else <c>~/.cache/transduce</c>.
    /// </summary>
    public static string DefaultCacheDirectory
    {
        get
        {
            string? own = Environment.GetEnvironmentVariable("TRANSDUCE_CACHE");
            if (!string.IsNullOrEmpty(own)) return own;
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            if (!string.IsNullOrEmpty(xdg)) return Path.Combine(xdg, "transduce");
            return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "transduce");
        }
    }

    /// <summary>The corpora this hub knows by name.</summary>
    public static IReadOnlyList<DatasetEntry> Known => Registry;

    /// <summary>Looks up a known corpus by name (case-insensitive).</summary>
    /// <param name="name">E.g. <c>fra-eng</c>.</param>
    /// <returns>The entry, or <c>null</c> if the name is unknown.</returns>
    public static DatasetEntry? Find(string name) =>
        Registry.FirstOrDefault(e => string.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// Makes sure <paramref name="entry"/> is downloaded, verified and extracted, and returns the extraction
    /// folder (the main file is <c>Path.Combine(folder, entry.MainFile)</c>). A cached archive whose SHA-1
    /// matches is used without any network access; one that does not match is downloaded again.
    /// </summary>
    /// <param name="entry">The corpus.</param>
    /// <param name="progress">Receives (bytes downloaded, total bytes if known) while downloading.</param>
    /// <param name="ct">Cancels the download or extraction.</param>
    /// <returns>The full path of the extraction folder.</returns>
    /// <exception cref="HttpRequestException">The server answered with an error status.</exception>
    /// <exception cref="InvalidDataException">The downloaded archive has the wrong SHA-1, or lacks the main file.</exception>
    public async Task<string> EnsureAsync(DatasetEntry entry, IProgress<(long done, long? total)>? progress = null,
        CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(entry);
        if (entry.Name.Length == 0 || entry.Name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || entry.Name.StartsWith('.'))
            throw new ArgumentException($"Dataset name '{entry.Name}' cannot be used as a file name.", nameof(entry));

        Directory.CreateDirectory(CacheDirectory);
        string archive = Path.Combine(CacheDirectory, entry.Name + ".zip");
        string folder = Path.Combine(CacheDirectory, entry.Name);

        bool cached = File.Exists(archive) &&
                      string.Equals(await Sha1OfFileAsync(archive, ct).ConfigureAwait(false), entry.Sha1,
                          StringComparison.OrdinalIgnoreCase);
        if (!cached)
        {
            // Anything extracted from a missing or corrupt archive is stale.
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
            await DownloadAsync(entry, archive, progress, ct).ConfigureAwait(false);
        }

        string mainFile = Path.Combine(folder, entry.MainFile);
        if (!File.Exists(mainFile))
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
            Extract(entry, archive, folder, ct);
        }
        return folder;
    }

    private async Task DownloadAsync(DatasetEntry entry, string archive, IProgress<(long done, long? total)>? progress,
        CancellationToken ct)
    {
        string temp = Path.Combine(CacheDirectory, $".{entry.Name}.{Guid.NewGuid():N}.part");
        try
        {
            string actual;
            HttpResponseMessage sent;
            try
            {
                sent = await _http.GetAsync(entry.Url, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
            }
            catch (HttpRequestException ex)
            {
                throw new HttpRequestException($"Downloading {entry.Url} failed: {ex.Message}", ex, ex.StatusCode);
            }
            using (var response = sent)
            {
                if (!response.IsSuccessStatusCode)
                    throw new HttpRequestException(
                        $"Downloading {entry.Url} failed: HTTP {(int)response.StatusCode} ({response.ReasonPhrase}).",
                        null, response.StatusCode);

                long? length = response.Content.Headers.ContentLength;
                using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
                await using (var source = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false))
                await using (var target = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None,
                                 bufferSize: 1 << 16, useAsync: true))
                {
                    var buffer = new byte[1 << 16];
                    long done = 0;
                    progress?.Report((0, length));
                    int read;
                    while ((read = await source.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                    {
                        hash.AppendData(buffer, 0, read);
                        await target.WriteAsync(buffer.AsMemory(0, read), ct).ConfigureAwait(false);
                        done += read;
                        progress?.Report((done, length));
                    }
                }
                actual = Convert.ToHexStringLower(hash.GetHashAndReset());
            }

            if (!string.Equals(actual, entry.Sha1, StringComparison.OrdinalIgnoreCase))
                throw new InvalidDataException(
                    $"SHA-1 mismatch for {entry.Url}: expected {entry.Sha1.ToLowerInvariant()}, actual {actual}.");

            File.Move(temp, archive, overwrite: true);
        }
        finally
        {
            TryDeleteFile(temp);
        }
    }

    private static void Extract(DatasetEntry entry, string archive, string folder, CancellationToken ct)
    {
        string temp = Path.Combine(Path.GetDirectoryName(folder)!, $".{entry.Name}.{Guid.NewGuid():N}.extracting");
        try
        {
            ZipFile.ExtractToDirectory(archive, temp);
            ct.ThrowIfCancellationRequested();
            if (!File.Exists(Path.Combine(temp, entry.MainFile)))
                throw new InvalidDataException($"The archive from {entry.Url} does not contain '{entry.MainFile}'.");
            try
            {
                Directory.Move(temp, folder);
            }
            catch (IOException) when (File.Exists(Path.Combine(folder, entry.MainFile)))
            {
                // Another process extracted the same archive first; its copy is as good as ours.
            }
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }

    private static async Task<string> Sha1OfFileAsync(string path, CancellationToken ct)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read,
            bufferSize: 1 << 16, useAsync: true);
        return Convert.ToHexStringLower(await SHA1.HashDataAsync(stream, ct).ConfigureAwait(false));
    }

    private static void TryDeleteFile(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // best effort; a stray .part file is harmless and uniquely named
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
