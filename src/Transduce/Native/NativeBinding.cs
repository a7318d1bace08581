namespace Transduce.Native;

/// <summary>
/// One native binding beyond TorchSharp's API (a C++ symbol of libtorch, an operator reached through TorchScript, a C
/// library function), probed once per process. Its user asks <see cref="Available"/> and takes the binding's fallback
/// when it is false; the first caller to find it missing writes one warning naming the binding, the reason and the
/// fallback. Nothing here ever calls a symbol that was not found.
/// </summary>
internal sealed class NativeBinding
{
    private readonly Lazy<string?> probe;
    private string? disabled;
    private int warned;

    /// <summary>
    /// A binding named <paramref name="name"/> to <paramref name="symbols"/>; <paramref name="probe"/> returns null when it
    /// works, else why not; <paramref name="fallback"/> says what runs instead.
    /// </summary>
    public NativeBinding(string name, string symbols, string fallback, Func<string?> probe)
    {
        Name = name;
        Symbols = symbols;
        Fallback = fallback;
        this.probe = new Lazy<string?>(() =>
        {
            try
            {
                return probe();
            }
            catch (Exception e)
            {
                return $"{e.GetType().Name}: {e.Message}";
            }
        });
    }

    /// <summary>The binding's name, as the capability report prints it.</summary>
    public string Name { get; }

    /// <summary>The native functions or operators it binds.</summary>
    public string Symbols { get; }

    /// <summary>What runs instead when the binding is unavailable.</summary>
    public string Fallback { get; }

    /// <summary>Where warnings go (standard error by default; one line per unavailable binding per process).</summary>
    internal static Action<string> Warn { get; set; } = line => Console.Error.WriteLine(line);

    /// <summary>True when the binding was found and answered its probe (and is not disabled for a test).</summary>
    public bool Available
    {
        get
        {
            if (disabled is not null) return false;
            if (probe.Value is null) return true;
            if (Interlocked.Exchange(ref warned, 1) == 0)
                Warn($"warning: {Name} ({Symbols}) is not available: {probe.Value}; {Fallback}");
            return false;
        }
    }

    /// <summary>Why the binding is unavailable, or null when it is available.</summary>
    public string? Reason => disabled ?? probe.Value;

    /// <summary>
    /// Tests: makes the binding report itself unavailable (with <paramref name="reason"/>) until the returned scope is
    /// disposed, so the fallback can be run on a machine where the binding works.
    /// </summary>
    internal IDisposable Disable(string reason = "disabled for a test")
    {
        string? before = disabled;
        disabled = reason;
        return new Restore(() => disabled = before);
    }

    private sealed class Restore(Action restore) : IDisposable
    {
        private Action? restore = restore;

        public void Dispose()
        {
            restore?.Invoke();
            restore = null;
        }
    }
}

/// <summary>Every native binding of the library, each probed once on first use (the capability report lists them).</summary>
internal static class NativeBindings
{
    /// <summary>All of them, in report order.</summary>
    public static IReadOnlyList<NativeBinding> All =>
        [OneDnnKernels.Binding, Int8Kernels.Binding, Autocast.Binding, WeightVersions.Binding, NativeMemory.Binding];
}
