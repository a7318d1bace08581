using System.Diagnostics;

namespace Transduce.Tests.Distributed;

/// <summary>
/// Runs the repository's Python package (python/transduce_torch) with Debian's python3-torch, which <c>.ci/run</c>
/// installs: plain <c>python3</c> for small scripts, <c>torchrun</c> for the DDP trainer.
/// </summary>
internal static class PythonTorch
{
    /// <summary><c>$TRANSDUCE_PYTHON</c>, else Debian's /usr/bin/python3 (where python3-torch lives).</summary>
    public static string Interpreter => Environment.GetEnvironmentVariable("TRANSDUCE_PYTHON") is { Length: > 0 } p ? p : "/usr/bin/python3";

    /// <summary>The torchrun beside the interpreter.</summary>
    public static string Torchrun => Path.Combine(Path.GetDirectoryName(Interpreter)!, "torchrun");

    public static string PackageFolder => Path.Combine(TestPaths.RepoRoot, "python");

    /// <summary>Runs <paramref name="program"/> with the package importable; returns exit code and output.</summary>
    public static (int Code, string Out, string Err) Run(string program, IEnumerable<string> args, string workingDirectory, TimeSpan? timeout = null)
    {
        if (!File.Exists(program))
            throw new FileNotFoundException($"{program} not found: install python3-torch (apt-get install python3-torch libopenblas0-openmp; .ci/run does)");
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workingDirectory,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["PYTHONPATH"] = PackageFolder;
        psi.Environment["PYTHONDONTWRITEBYTECODE"] = "1";
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(timeout ?? TimeSpan.FromMinutes(5)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish");
        }
        return (p.ExitCode, output.Result, err.Result);
    }

    /// <summary>python3 -c <paramref name="script"/>.</summary>
    public static (int Code, string Out, string Err) Script(string script, string workingDirectory, params string[] args) =>
        Run(Interpreter, ["-c", script, .. args], workingDirectory);

    /// <summary><c>python3 -m transduce_torch.train ARGS</c>: one process, no process group (what one rank does, without torchrun's start-up).</summary>
    public static (int Code, string Out, string Err) TrainAlone(string workingDirectory, params string[] args) =>
        Run(Interpreter, ["-m", "transduce_torch.train", .. args], workingDirectory);

    /// <summary>
    /// <c>torchrun --standalone --nproc_per_node N -m transduce_torch.train ARGS</c>. <c>--redirects 1 --tee 1</c> works
    /// around Debian 12's torch 1.13 under Python 3.11, whose torchrun fails with its default <c>--redirects 0</c>.
    /// </summary>
    public static (int Code, string Out, string Err) Train(int ranks, string workingDirectory, params string[] args) =>
        Run(Torchrun, ["--standalone", "--nproc_per_node", ranks.ToString(), "--redirects", "1", "--tee", "1", "--monitor_interval", "0.2",
            "--log_dir", Path.Combine(workingDirectory, $"torchrun-{Guid.NewGuid():N}"), "-m", "transduce_torch.train", .. args], workingDirectory);
}
