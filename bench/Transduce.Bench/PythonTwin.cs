using System.Diagnostics;

namespace Transduce.Bench;

/// <summary>Runs a script of bench/pytorch with Debian's python3 (which has python3-torch) and returns its standard output.</summary>
internal static class PythonTwin
{
    /// <summary>The interpreter: <c>$TRANSDUCE_PYTHON</c>, else /usr/bin/python3 (Debian's, where python3-torch lives).</summary>
    public static string Interpreter => Environment.GetEnvironmentVariable("TRANSDUCE_PYTHON") is { Length: > 0 } p ? p : "/usr/bin/python3";

    /// <summary>bench/pytorch of this repository, found upwards from the current folder or the binary.</summary>
    public static string ScriptFolder
    {
        get
        {
            foreach (string start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
                for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                {
                    string candidate = Path.Combine(dir.FullName, "bench", "pytorch");
                    if (File.Exists(Path.Combine(candidate, "train_twin.py"))) return candidate;
                }
            throw new DirectoryNotFoundException("bench/pytorch/train_twin.py not found above the current folder or the binary");
        }
    }

    /// <summary>Runs <paramref name="script"/> with <paramref name="arguments"/>; stderr passes through; fails on a non-zero exit.</summary>
    public static string Run(string script, params string[] arguments)
    {
        var start = new ProcessStartInfo(Interpreter) { RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(ScriptFolder, script));
        foreach (string a in arguments) start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {Interpreter}");
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{script} exited with code {process.ExitCode} (is python3-torch installed? apt-get install python3-torch)");
        return output;
    }
}
