using System.Runtime.InteropServices;

namespace Transduce.IO;

/// <summary>Writes files so that a crash leaves either the old file or the complete new one, never a torn one.</summary>
internal static class AtomicFile
{
    /// <summary>
    /// Writes through <paramref name="write"/> into a temporary file beside <paramref name="path"/>, flushes it to disk,
    /// renames it over <paramref name="path"/> and flushes the directory, so the new name survives a power cut too.
    /// </summary>
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full) ?? ".";
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.tmp-{Guid.NewGuid():N}");
        try
        {
            using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
            DurableDirectory.Flush(dir);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    /// <summary>Writes <paramref name="text"/> as UTF-8 (no BOM) atomically.</summary>
    public static void WriteAllText(string path, string text) =>
        Write(path, s => s.Write(new System.Text.UTF8Encoding(false).GetBytes(text)));
}

/// <summary>Directory operations that .NET does not offer: flushing a directory's entries, swapping two directories.</summary>
internal static partial class DurableDirectory
{
    private const int AtFdCwd = -100;
    private const uint RenameExchange = 2;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "renameat2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int RenameAt2(int oldDirFd, string oldPath, int newDirFd, string newPath, uint flags);

    private static bool exchangeUnavailable;

    /// <summary>
    /// Flushes a directory's entries to disk (after a rename into it), as a file's data is flushed with fsync. A no-op
    /// where the system has no such call (Windows flushes metadata itself).
    /// </summary>
    public static void Flush(string directory)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        int fd = Open(directory, 0 /* O_RDONLY */);
        if (fd < 0) return;
        try
        {
            Fsync(fd);
        }
        finally
        {
            Close(fd);
        }
    }

    /// <summary>
    /// Atomically swaps two existing directories (Linux <c>renameat2(RENAME_EXCHANGE)</c>): at every instant each path
    /// names one complete directory. False where the system or file system cannot, so the caller falls back to two renames.
    /// </summary>
    public static bool TryExchange(string a, string b)
    {
        if (!OperatingSystem.IsLinux() || exchangeUnavailable) return false;
        try
        {
            if (RenameAt2(AtFdCwd, a, AtFdCwd, b, RenameExchange) == 0) return true;
        }
        catch (EntryPointNotFoundException)
        {
        }
        exchangeUnavailable = true;
        return false;
    }
}
