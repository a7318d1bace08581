using System.Diagnostics;

namespace Transduce.Bench.Load;

/// <summary>
/// Background CPU load, as <c>stress --cpu N</c> makes it: <c>N</c> shell processes each spinning one core, started by
/// the bench and killed when disposed. With N equal to the cores, the machine has twice the work it can run.
/// </summary>
internal sealed class CpuStress : IDisposable
{
    private readonly List<Process> spinners = [];

    /// <summary>Starts <paramref name="processes"/> spinning processes (none for 0).</summary>
    public CpuStress(int processes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(processes);
        for (int i = 0; i < processes; i++)
        {
            var info = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
            info.ArgumentList.Add("-c");
            info.ArgumentList.Add("while :; do :; done");
            spinners.Add(Process.Start(info) ?? throw new InvalidOperationException("could not start a /bin/sh spinner for --stress"));
        }
    }

    /// <summary>Kills the spinners.</summary>
    public void Dispose()
    {
        foreach (var p in spinners)
        {
            try
            {
                if (!p.HasExited) p.Kill();
                p.WaitForExit(5000);
            }
            catch (InvalidOperationException)
            {
                // already gone
            }
            p.Dispose();
        }
        spinners.Clear();
    }
}
