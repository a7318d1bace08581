using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace Transduce.Bench.Load;

/// <summary>
/// The real <c>transduce serve</c> as a child process (<c>dotnet Transduce.Cli.dll serve …</c>) listening on a free
/// loopback port: it is started with <c>--urls http://127.0.0.1:0</c> and the port the OS picked is read from the
/// "serving … on http://127.0.0.1:PORT" line it prints once it listens.
/// </summary>
public sealed partial class ServeProcess : IDisposable
{
    /// <summary>POSIX signal numbers (Linux).</summary>
    public const int SigKill = 9, SigTerm = 15;

    private readonly Process process;
    private readonly StringBuilder log;

    private ServeProcess(Process process, StringBuilder log, Uri url, IReadOnlyList<string> arguments)
    {
        this.process = process;
        this.log = log;
        Url = url;
        Arguments = arguments;
    }

    /// <summary>Where the server listens, e.g. <c>http://127.0.0.1:40123/</c>.</summary>
    public Uri Url { get; }

    /// <summary>The arguments given to <c>Transduce.Cli.dll</c>.</summary>
    public IReadOnlyList<string> Arguments { get; }

    /// <summary>The server's process id (the <c>dotnet</c> host runs the CLI in-process, so this is the server itself).</summary>
    public int Id => process.Id;

    /// <summary>True once the process has ended.</summary>
    public bool HasExited => process.HasExited;

    /// <summary>The exit code (128 + signal number when a signal ended it).</summary>
    public int ExitCode => process.ExitCode;

    /// <summary>What the server wrote to stdout and stderr so far.</summary>
    public string Log
    {
        get { lock (log) return log.ToString(); }
    }

    /// <summary>
    /// Starts <c>dotnet <paramref name="cliDll"/> serve --model <paramref name="model"/> --urls http://127.0.0.1:0</c>
    /// followed by <paramref name="serveArguments"/>, and waits until it listens.
    /// </summary>
    public static Task<ServeProcess> StartAsync(string cliDll, string model, IEnumerable<string> serveArguments, TimeSpan startupTimeout) =>
        StartAsync(cliDll, ["--model", model, "--urls", "http://127.0.0.1:0", .. serveArguments], startupTimeout);

    /// <summary>
    /// Starts <c>dotnet <paramref name="cliDll"/> serve</c> with exactly <paramref name="serveArguments"/> (which must
    /// name the model and the addresses) and waits until it listens; <see cref="Url"/> is the first address it prints.
    /// </summary>
    public static async Task<ServeProcess> StartAsync(string cliDll, IReadOnlyList<string> serveArguments, TimeSpan startupTimeout)
    {
        if (!File.Exists(cliDll)) throw new FileNotFoundException($"{cliDll}: not found (build the CLI first: dotnet build -c Release src/Transduce.Cli)", cliDll);
        List<string> arguments = ["serve", .. serveArguments];
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(cliDll);
        foreach (string a in arguments) psi.ArgumentList.Add(a);

        var log = new StringBuilder();
        var listening = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                listening.TrySetException(new InvalidOperationException("serve closed its output before it listened"));
                return;
            }
            lock (log) log.AppendLine(e.Data);
            if (ServingLine().Match(e.Data) is { Success: true } m) listening.TrySetResult(new Uri(m.Groups[1].Value));
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null) lock (log) log.AppendLine(e.Data);
        };
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var url = await listening.Task.WaitAsync(startupTimeout);
            return new ServeProcess(process, log, url, arguments);
        }
        catch (Exception e)
        {
            if (!process.HasExited) process.Kill();
            process.WaitForExit();
            string text;
            lock (log) text = log.ToString();
            process.Dispose();
            throw new InvalidOperationException($"transduce serve did not start ({e.Message}):\n{text}", e);
        }
    }

    /// <summary>Sends <paramref name="signal"/> (e.g. <see cref="SigTerm"/>, <see cref="SigKill"/>) to the server.</summary>
    public void Signal(int signal)
    {
        if (kill(process.Id, signal) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (!process.HasExited) throw new InvalidOperationException($"kill({process.Id}, {signal}) failed: errno {errno}");
        }
    }

    /// <summary>Waits until the process ends; false if it is still running after <paramref name="timeout"/>.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        try
        {
            await process.WaitForExitAsync().WaitAsync(timeout);
            process.WaitForExit();   // also drains the output readers
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    /// <summary>
    /// The server's peak resident set size (<c>VmHWM</c> in <c>/proc/PID/status</c>) in bytes; null once it has exited
    /// or where <c>/proc</c> has no such field.
    /// </summary>
    public long? PeakRssBytes() => ProcStatusBytes("VmHWM:");

    /// <summary>The server's current resident set size (<c>VmRSS</c>) in bytes, or null.</summary>
    public long? RssBytes() => ProcStatusBytes("VmRSS:");

    private long? ProcStatusBytes(string field)
    {
        try
        {
            foreach (string line in File.ReadLines($"/proc/{process.Id}/status"))
            {
                if (!line.StartsWith(field, StringComparison.Ordinal)) continue;
                string[] parts = line[field.Length..].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);   // "VmHWM:\t  123456 kB"
                return parts.Length == 2 && parts[1] == "kB" && long.TryParse(parts[0], out long kb) ? kb * 1024 : null;
            }
        }
        catch (IOException)
        {
        }
        return null;
    }

    /// <summary>Asks the server to stop (SIGTERM) and waits; kills it if it has not ended after <paramref name="timeout"/>.</summary>
    /// <returns>True if it stopped by itself.</returns>
    public async Task<bool> StopAsync(TimeSpan timeout)
    {
        if (process.HasExited) return true;
        Signal(SigTerm);
        if (await WaitForExitAsync(timeout)) return true;
        process.Kill();
        process.WaitForExit();
        return false;
    }

    /// <summary>Kills the server if it still runs.</summary>
    public void Dispose()
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill();
                process.WaitForExit();
            }
        }
        catch (InvalidOperationException)
        {
        }
        process.Dispose();
    }

    [DllImport("libc", SetLastError = true)]
#pragma warning disable SYSLIB1054 // a plain int → int call; LibraryImport would need unsafe code for nothing
    private static extern int kill(int pid, int sig);
#pragma warning restore SYSLIB1054

    [GeneratedRegex(@"^serving .* on (http://\S+?)/?$")]
    private static partial Regex ServingLine();
}
