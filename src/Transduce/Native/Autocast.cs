using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Transduce.Native;

/// <summary>
/// libtorch's CPU autocast, which TorchSharp 0.107 does not wrap: inside a scope, the operations on libtorch's
/// lower-precision list (linear, matmul, bmm, addmm, convolutions, …) cast their float32 inputs to bfloat16 and
/// compute in bfloat16; everything else runs in the type it is given. A float32 weight is cast once per scope
/// (libtorch caches the copy), and the cast is differentiable, so gradients reach the float32 weight as float32.
/// What stays float32 is therefore what is computed from float32 tensors: embeddings, the residual stream and the
/// layer norms on it. Softmax and the loss are kept in float32 explicitly (see <c>AttentionMasks.MaskedSoftmax</c>
/// and <c>Seq2SeqLoss.MaskedCrossEntropy</c> / <c>Seq2SeqLoss.Backward</c>).
/// </summary>
/// <remarks>
/// The state is per thread, as in PyTorch: a scope covers the work its own thread does. Run the forward pass inside
/// a scope and the backward pass after it (as PyTorch recommends): leaving the outermost scope drops the cached
/// weight copies, so the next step casts the updated weights afresh. The functions are reached through their C++
/// symbols in libtorch_cpu (Itanium ABI: Linux, macOS); where they are missing, <see cref="Enter"/> says so.
/// </remarks>
internal static class Autocast
{
    private const sbyte Cpu = 0; // c10::DeviceType::CPU

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void SetEnabledFn(sbyte device, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    [return: MarshalAs(UnmanagedType.U1)]
    private delegate bool IsEnabledFn(sbyte device);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void SetDtypeFn(sbyte device, sbyte scalarType);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate sbyte GetDtypeFn(sbyte device);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int NestingFn();

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void ClearCacheFn();

    private sealed record Api(SetEnabledFn SetEnabled, IsEnabledFn IsEnabled, SetDtypeFn SetDtype, GetDtypeFn GetDtype,
        NestingFn Increment, NestingFn Decrement, ClearCacheFn ClearCache);

    private static Api? native;

    /// <summary>The seven functions, resolved once. Without them, bfloat16 training cannot run (decoding does not use them).</summary>
    public static NativeBinding Binding { get; } = new("CPU autocast", "at::autocast: 7 functions",
        "training with --precision bf16 stops with an error; float32 training and all decoding are unaffected", Bind);

    /// <summary>True when this libtorch exposes CPU autocast.</summary>
    public static bool IsAvailable => Binding.Available;

    /// <summary>True when the calling thread is inside a bfloat16 autocast scope.</summary>
    public static bool IsActive => Binding.Available && native!.IsEnabled(Cpu);

    /// <summary>
    /// Enters a scope in which the calling thread computes in <paramref name="type"/>; disposing it restores what was
    /// there before. Float32 gives a scope that changes nothing.
    /// </summary>
    /// <exception cref="NotSupportedException">bfloat16 was asked for and this libtorch has no CPU autocast.</exception>
    /// <exception cref="ArgumentException">Any other type: autocast computes in float32 or bfloat16 only (int8 decoding goes through packed products instead).</exception>
    public static IDisposable Enter(ScalarType type)
    {
        if (type == ScalarType.Float32) return NoScope.Instance;
        if (type != ScalarType.BFloat16) throw new ArgumentException($"{type}: autocast computes in float32 or bfloat16 only");
        if (!Binding.Available)
            throw new NotSupportedException($"precision bf16 needs libtorch's CPU autocast, which is not available here: {Binding.Reason}");
        return new Scope(native!, ScalarType.BFloat16);
    }

    private sealed class NoScope : IDisposable
    {
        public static readonly NoScope Instance = new();

        public void Dispose() { }
    }

    private sealed class Scope : IDisposable
    {
        private readonly Api api;
        private readonly bool wasEnabled;
        private readonly sbyte previousType;
        private bool disposed;

        public Scope(Api api, ScalarType type)
        {
            this.api = api;
            wasEnabled = api.IsEnabled(Cpu);
            previousType = api.GetDtype(Cpu);
            api.SetDtype(Cpu, (sbyte)type);
            api.SetEnabled(Cpu, true);
            api.Increment();
        }

        public void Dispose()
        {
            if (disposed) return;
            disposed = true;
            // As PyTorch's context manager does: the outermost exit frees the cached weight casts.
            if (api.Decrement() == 0) api.ClearCache();
            api.SetEnabled(Cpu, wasEnabled);
            api.SetDtype(Cpu, previousType);
        }
    }

    private static string? Bind()
    {
        // TorchSharp has loaded libtorch_cpu by the time any tensor exists; make sure of it, then find it the way
        // DllImport would (the application's folder, runtimes/<rid>/native).
        using (var _ = empty(0)) { }
        if (!NativeLibrary.TryLoad("torch_cpu", typeof(Autocast).Assembly, null, out var library) &&
            !NativeLibrary.TryLoad("libtorch_cpu", typeof(Autocast).Assembly, null, out library))
            return "libtorch_cpu was not found";
        T? Get<T>(string symbol) where T : Delegate =>
            NativeLibrary.TryGetExport(library, symbol, out var address) ? Marshal.GetDelegateForFunctionPointer<T>(address) : null;
        var setEnabled = Get<SetEnabledFn>("_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb");
        var isEnabled = Get<IsEnabledFn>("_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE");
        var setDtype = Get<SetDtypeFn>("_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE");
        var getDtype = Get<GetDtypeFn>("_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE");
        var increment = Get<NestingFn>("_ZN2at8autocast17increment_nestingEv");
        var decrement = Get<NestingFn>("_ZN2at8autocast17decrement_nestingEv");
        var clear = Get<ClearCacheFn>("_ZN2at8autocast11clear_cacheEv");
        if (setEnabled is null || isEnabled is null || setDtype is null || getDtype is null || increment is null || decrement is null || clear is null)
            return "libtorch_cpu does not export at::autocast (set_autocast_enabled, set_autocast_dtype, …)";
        native = new Api(setEnabled, isEnabled, setDtype, getDtype, increment, decrement, clear);
        return null;
    }
}
