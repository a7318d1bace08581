namespace Transduce.Checkpoints;

/// <summary>
/// The lock a training run holds on its directory (<c>.lock</c>, locked exclusively through the file system, so it
/// dies with the process). A checkpoint save replaces the whole directory, so the lock travels with it: the new
/// directory's <c>.lock</c> is locked before the swap and the old one released after it, and the directory is never
/// unlocked in between.
/// </summary>
internal sealed class RunLock : IDisposable
{
    public const string FileName = ".lock";

    private FileStream? current, next;

    private RunLock(FileStream held) => current = held;

    /// <summary>Locks <paramref name="directory"/>, or throws <see cref="IOException"/> saying another process has it.</summary>
    public static RunLock Acquire(string directory) => new(Open(directory));

    private static FileStream Open(string directory)
    {
        string path = Path.Combine(directory, FileName);
        try
        {
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (File.Exists(path))
        {
            throw new IOException($"{directory}: another training process is using this run directory (it holds {path}); " +
                                  "wait for it to finish or stop it first", e);
        }
    }

    /// <summary>Locks the <c>.lock</c> of the directory about to replace the locked one.</summary>
    public void Prepare(string newDirectory)
    {
        next?.Dispose();
        next = Open(newDirectory);
    }

    /// <summary>The new directory is in place: release the old one's lock.</summary>
    public void Commit()
    {
        if (next is null) return;
        current?.Dispose();
        current = next;
        next = null;
    }

    /// <summary>The save failed before the swap: keep the old lock, drop the new.</summary>
    public void Abort()
    {
        next?.Dispose();
        next = null;
    }

    public void Dispose()
    {
        current?.Dispose();
        next?.Dispose();
        current = next = null;
    }
}
