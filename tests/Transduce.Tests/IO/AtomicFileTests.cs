using Transduce.IO;
using Transduce.Checkpoints;

namespace Transduce.Tests.IO;

/// <summary>A file written through <see cref="AtomicFile"/> is either the old one or the complete new one.</summary>
public sealed class AtomicFileTests : IDisposable
{
    private readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    [Fact]
    public void WritesCreatesFoldersAndReplacesLeavingNoTemporaryFile()
    {
        string path = Path.Combine(dir.Path, "a", "b", "notes.txt");
        AtomicFile.WriteAllText(path, "première version");
        Assert.Equal("première version", File.ReadAllText(path));
        AtomicFile.WriteAllText(path, "second");
        Assert.Equal("second", File.ReadAllText(path));
        Assert.Equal([path], Directory.GetFiles(Path.GetDirectoryName(path)!));
        Assert.Equal("second"u8.ToArray(), File.ReadAllBytes(path)); // UTF-8 without a byte-order mark
    }

    [Fact]
    public void AWriteThatFailsHalfwayLeavesTheOldFileWhole()
    {
        string path = dir.WriteText("model.bin", "old contents");
        var e = Assert.Throws<IOException>(() => AtomicFile.Write(path, stream =>
        {
            stream.Write("new, but only half of"u8);
            throw new IOException("disk full");
        }));
        Assert.Equal("disk full", e.Message);
        Assert.Equal("old contents", File.ReadAllText(path));
        Assert.Equal([path], Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void AFailedFirstWriteLeavesNothing()
    {
        string path = dir.File("fresh.json");
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, _ => throw new InvalidOperationException("no")));
        Assert.Empty(Directory.GetFiles(dir.Path));
    }
}
