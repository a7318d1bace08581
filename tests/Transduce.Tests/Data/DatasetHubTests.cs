using System.IO.Compression;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Transduce.Data;

namespace Transduce.Tests.Data;

/// <summary>DatasetHub against a loopback HTTP server; nothing here leaves 127.0.0.1.</summary>
public sealed class DatasetHubTests : IDisposable
{
    private const string Content = "Go.\tVa !\nHi.\tSalut !\n";
    private readonly string _cache = Path.Combine(Path.GetTempPath(), "transduce-hub-test-" + Guid.NewGuid().ToString("N"));
    private readonly LoopbackServer _server = new();
    private readonly HttpClient _http = new(new HttpClientHandler { UseProxy = false });
    private readonly byte[] _zip = BuildZip();

    public DatasetHubTests() => _server.Files["/corpus.zip"] = _zip;

    public void Dispose()
    {
        _http.Dispose();
        _server.Dispose();
        if (Directory.Exists(_cache)) Directory.Delete(_cache, recursive: true);
    }

    private DatasetEntry Entry(string? sha1 = null, string path = "/corpus.zip") =>
        new("toy", new Uri(_server.BaseUrl, path), sha1 ?? Convert.ToHexStringLower(SHA1.HashData(_zip)), "toy/main.txt");

    [Fact]
    public async Task DownloadsVerifiesAndExtracts()
    {
        var hub = new DatasetHub(_cache, _http);
        var reports = new List<(long done, long? total)>();
        string folder = await hub.EnsureAsync(Entry(), new SyncProgress(reports.Add));

        Assert.Equal(Path.Combine(_cache, "toy"), folder);
        Assert.Equal(Content, await File.ReadAllTextAsync(Path.Combine(folder, "toy", "main.txt")));
        Assert.Equal(1, _server.RequestCount);
        Assert.Equal(((long)_zip.Length, (long?)_zip.Length), reports[^1]);
        // Only the archive and its folder remain: no temporary files or folders.
        Assert.Equal(["toy", "toy.zip"], Directory.EnumerateFileSystemEntries(_cache).Select(Path.GetFileName).Order());
    }

    [Fact]
    public async Task SecondCallUsesTheCacheWithoutNetwork()
    {
        string first = await new DatasetHub(_cache, _http).EnsureAsync(Entry());
        string second = await new DatasetHub(_cache, _http).EnsureAsync(Entry());
        Assert.Equal(first, second);
        Assert.Equal(1, _server.RequestCount);
    }

    [Fact]
    public async Task WrongSha1IsAClearErrorAndLeavesNothing()
    {
        var entry = Entry(sha1: new string('0', 40));
        var ex = await Assert.ThrowsAsync<InvalidDataException>(() => new DatasetHub(_cache, _http).EnsureAsync(entry));
        Assert.Contains(entry.Url.ToString(), ex.Message);
        Assert.Contains(new string('0', 40), ex.Message);
        Assert.Contains(Convert.ToHexStringLower(SHA1.HashData(_zip)), ex.Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(_cache));
    }

    [Fact]
    public async Task CorruptedCachedArchiveIsDownloadedAgain()
    {
        var hub = new DatasetHub(_cache, _http);
        string folder = await hub.EnsureAsync(Entry());
        await File.WriteAllTextAsync(Path.Combine(_cache, "toy.zip"), "not the archive");
        await File.WriteAllTextAsync(Path.Combine(folder, "toy", "main.txt"), "stale");

        string again = await hub.EnsureAsync(Entry());

        Assert.Equal(2, _server.RequestCount);
        Assert.Equal(_zip, await File.ReadAllBytesAsync(Path.Combine(_cache, "toy.zip")));
        Assert.Equal(Content, await File.ReadAllTextAsync(Path.Combine(again, "toy", "main.txt")));
    }

    [Fact]
    public async Task MissingFileIsAClearErrorNamingTheUrl()
    {
        var entry = Entry(path: "/nope.zip");
        var ex = await Assert.ThrowsAsync<HttpRequestException>(() => new DatasetHub(_cache, _http).EnsureAsync(entry));
        Assert.Contains(entry.Url.ToString(), ex.Message);
        Assert.Contains("404", ex.Message);
        Assert.Equal(HttpStatusCode.NotFound, ex.StatusCode);
        Assert.Empty(Directory.EnumerateFileSystemEntries(_cache));
    }

    [Fact]
    public async Task UnreachableServerIsAnErrorNamingTheUrl()
    {
        // A loopback port nobody listens on (the probe listener is closed again).
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        var entry = new DatasetEntry("toy", new Uri($"http://127.0.0.1:{port}/corpus.zip"), new string('0', 40), "toy/main.txt");
        var ex = await Assert.ThrowsAsync<HttpRequestException>(() => new DatasetHub(_cache, _http).EnsureAsync(entry));
        Assert.Contains(entry.Url.ToString(), ex.Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(_cache));
    }

    [Fact]
    public void RegistryKnowsFraEng()
    {
        var e = DatasetHub.Find("fra-eng");
        Assert.NotNull(e);
        Assert.Equal(new Uri("http://d2l-data.s3-accelerate.amazonaws.com/fra-eng.zip"), e.Url);
        Assert.Equal("94646ad1522d915e7b0f9296181140edcf86a4f5", e.Sha1);
        Assert.Equal("fra-eng/fra.txt", e.MainFile);
        Assert.Null(DatasetHub.Find("no-such-corpus"));
        Assert.False(string.IsNullOrEmpty(DatasetHub.DefaultCacheDirectory));
    }

    private static byte[] BuildZip()
    {
        using var ms = new MemoryStream();
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
        {
            var file = zip.CreateEntry("toy/main.txt");
            using var w = new StreamWriter(file.Open(), new UTF8Encoding(false));
            w.Write(Content);
        }
        return ms.ToArray();
    }

    // Progress<T> posts to the thread pool; this one reports synchronously so the test sees every call.
    private sealed class SyncProgress(Action<(long, long?)> report) : IProgress<(long done, long? total)>
    {
        public void Report((long done, long? total) value) => report(value);
    }

    /// <summary>Serves <see cref="Files"/> on http://127.0.0.1:port/ and counts requests.</summary>
    private sealed class LoopbackServer : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly Task _loop;
        private int _requests;

        public LoopbackServer()
        {
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            int port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            BaseUrl = new Uri($"http://127.0.0.1:{port}/");
            _listener.Prefixes.Add(BaseUrl.ToString());
            _listener.Start();
            _loop = Task.Run(ServeAsync);
        }

        public Uri BaseUrl { get; }

        public Dictionary<string, byte[]> Files { get; } = new(StringComparer.Ordinal);

        public int RequestCount => Volatile.Read(ref _requests);

        private async Task ServeAsync()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext ctx;
                try
                {
                    ctx = await _listener.GetContextAsync();
                }
                catch (Exception) when (!_listener.IsListening)
                {
                    return;
                }
                Interlocked.Increment(ref _requests);
                using var response = ctx.Response;
                if (Files.TryGetValue(ctx.Request.Url!.AbsolutePath, out var body))
                {
                    response.StatusCode = 200;
                    response.ContentLength64 = body.Length;
                    await response.OutputStream.WriteAsync(body);
                }
                else
                {
                    response.StatusCode = 404;
                }
            }
        }

        public void Dispose()
        {
            _listener.Stop();
            _listener.Close();
            try { _loop.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
        }
    }
}
