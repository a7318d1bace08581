using System.Reflection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Transduce.Models;

/// <summary>
/// Building a model whose weights will come from a file, without computing weights that are thrown away: inside
/// <see cref="WithoutWeights"/> the layers of the built-in models create their parameters on libtorch's <c>meta</c>
/// device (shapes only: no memory, no random initialisation — for a 600M-parameter model that initialisation took 15 s),
/// and <see cref="Materialize"/> then gives every parameter and buffer its real tensor, which may be a view of a
/// memory-mapped weights file. Fixed tables a module computes (sinusoid positions) are always real.
/// </summary>
/// <remarks>
/// The context is per thread (a service may build one model while another decodes). A module that creates its own
/// tensors outside these helpers is still correct — it is simply initialised as usual — and a third-party model
/// (a user's own <see cref="Architecture.EncoderDecoder"/>) is always built normally: <see cref="Materialize"/> replaces
/// only tensors on <c>meta</c>.
/// </remarks>
internal static class ModelConstruction
{
    [ThreadStatic] private static bool shapesOnly;

    /// <summary>The device new parameters go to on this thread: <c>meta</c> inside <see cref="WithoutWeights"/>, else the CPU.</summary>
    public static Device ParameterDevice => shapesOnly ? META : CPU;

    /// <summary>True inside <see cref="WithoutWeights"/>.</summary>
    public static bool ShapesOnly => shapesOnly;

    /// <summary>Until disposed, the built-in layers on this thread create parameters as shapes only (on <c>meta</c>).</summary>
    public static IDisposable WithoutWeights() => new Scope();

    private sealed class Scope : IDisposable
    {
        private readonly bool previous = shapesOnly;
        private bool disposed;

        public Scope() => shapesOnly = true;

        public void Dispose()
        {
            if (disposed) return;
            disposed = true;
            shapesOnly = previous;
        }
    }

    /// <summary>A linear layer (PyTorch's initialisation, or shapes only).</summary>
    public static Linear Linear(long inFeatures, long outFeatures, bool hasBias = true) =>
        nn.Linear(inFeatures, outFeatures, hasBias, device: ParameterDevice);

    /// <summary>A layer norm (γ = 1, β = 0, or shapes only).</summary>
    public static LayerNorm LayerNorm(long size, double eps) => nn.LayerNorm(size, eps, device: ParameterDevice);

    /// <summary>
    /// An embedding table of <paramref name="rows"/> × <paramref name="width"/> (TorchSharp's initialisation, N(0, 1)), or
    /// shapes only. TorchSharp's constructor always fills a CPU table first, whatever the device asked for: shapes only, this
    /// makes a one-row module and gives it a table on <c>meta</c>.
    /// </summary>
    public static Embedding Embedding(long rows, long width)
    {
        if (!shapesOnly) return nn.Embedding(rows, width);
        var module = nn.Embedding(1, width);
        module.weight = new Parameter(empty(rows, width, device: META));
        return module;
    }

    /// <summary>
    /// Gives every parameter and buffer of <paramref name="model"/> that is on <c>meta</c> the tensor
    /// <paramref name="supply"/> returns for its state-dict name (called once per tensor: a weight shared by several modules,
    /// like tied embeddings, is supplied under its first name and stays shared). The supplied tensor must have the same shape;
    /// a parameter keeps its <c>requires_grad</c>. Throws <see cref="InvalidOperationException"/> when something is left on
    /// <c>meta</c>.
    /// </summary>
    public static void Materialize(nn.Module model, Func<string, Tensor, Tensor> supply)
    {
        var real = new Dictionary<IntPtr, Tensor>();
        var supplied = new HashSet<long>();
        foreach (var (name, meta) in model.state_dict())
        {
            if (meta.device_type != DeviceType.META || real.ContainsKey(Impl(meta))) continue;
            var tensor = supply(name, meta);
            if (!tensor.shape.SequenceEqual(meta.shape))
                throw new InvalidOperationException($"'{name}': supplied shape [{string.Join(", ", tensor.shape)}] for [{string.Join(", ", meta.shape)}]");
            // Two weights of the model must not share memory unless they are one weight (tied): a file that stores one
            // tensor under two names for an untied model gives each its own copy.
            if (tensor.NumberOfElements > 0 && !supplied.Add(IO.MappedFile.Address(tensor)))
            {
                var copy = tensor.clone();
                tensor.Dispose();
                tensor = copy;
            }
            real[Impl(meta)] = meta is Parameter p ? new Parameter(tensor, p.requires_grad) : tensor;
        }
        foreach (var module in model.modules().Prepend(model).Distinct(ReferenceEqualityComparer.Instance).Cast<nn.Module>())
            Replace(module, real);
        foreach (var (name, t) in model.state_dict())
            if (t.device_type == DeviceType.META) throw new InvalidOperationException($"'{name}' was left without weights (internal error)");
    }

    // TorchSharp keeps a module's parameters twice: in typed fields (Linear._weight, our modules' fields), which forward reads,
    // and in the registration dictionaries, which state_dict and parameters() read. Both are pointed at the real tensors.
    private static readonly FieldInfo Parameters = typeof(nn.Module).GetField("_internal_params", BindingFlags.Instance | BindingFlags.NonPublic)
        ?? throw new MissingFieldException("TorchSharp's Module._internal_params (this TorchSharp version is not supported)");

    private static readonly FieldInfo Buffers = typeof(nn.Module).GetField("_internal_buffers", BindingFlags.Instance | BindingFlags.NonPublic)
        ?? throw new MissingFieldException("TorchSharp's Module._internal_buffers (this TorchSharp version is not supported)");

    // The identity of a tensor: TorchSharp hands out a new wrapper (handle) each time a native module's weight is read, so
    // one weight tied to two modules has two handles; both point at one libtorch at::Tensor, whose first word is its TensorImpl.
    private static IntPtr Impl(Tensor t) => System.Runtime.InteropServices.Marshal.ReadIntPtr(t.Handle);

    /// <summary>
    /// The names of <paramref name="model"/>'s state dict grouped by weight: one group per tensor, listing every name it
    /// has (a tied embedding has three), in state-dict order.
    /// </summary>
    public static IReadOnlyList<IReadOnlyList<string>> Aliases(nn.Module model) =>
        model.state_dict().GroupBy(kv => Impl(kv.Value), kv => kv.Key).Select(g => (IReadOnlyList<string>)g.ToList()).ToList();

    private static void Replace(nn.Module module, Dictionary<IntPtr, Tensor> real)
    {
        // TorchSharp's native-backed modules (Embedding) keep the weight in libtorch too: their setters update it.
        foreach (var (name, parameter) in module.named_parameters(recurse: false).ToList())
            if (real.TryGetValue(Impl(parameter), out var t) && module.GetType().GetProperty(name, BindingFlags.Instance | BindingFlags.Public) is { CanWrite: true } property
                && property.PropertyType.IsAssignableFrom(typeof(Parameter)))
                property.SetValue(module, t);
        for (var type = module.GetType(); type is not null && type != typeof(nn.Module); type = type.BaseType)
            foreach (var field in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
                if (typeof(Tensor).IsAssignableFrom(field.FieldType) && field.GetValue(module) is Tensor { IsInvalid: false } old && real.TryGetValue(Impl(old), out var t))
                    field.SetValue(module, t);
        ReplaceValues(Parameters.GetValue(module), real);
        ReplaceValues(Buffers.GetValue(module), real);
    }

    // The registration dictionaries map names to a parameter, or to (tensor, persistent) for buffers.
    private static void ReplaceValues(object? dictionary, Dictionary<IntPtr, Tensor> real)
    {
        if (dictionary is null) return;
        var type = dictionary.GetType();
        var keys = type.GetProperty("Keys")!.GetValue(dictionary) as System.Collections.IEnumerable ?? throw new MissingMemberException(type.Name, "Keys");
        var indexer = type.GetProperty("Item", [typeof(string)]) ?? throw new MissingMemberException(type.Name, "Item");
        foreach (var key in keys.Cast<string>().ToList())
        {
            object? value = indexer.GetValue(dictionary, [key]);
            switch (value)
            {
                case Tensor { IsInvalid: false } t when real.TryGetValue(Impl(t), out var r):
                    indexer.SetValue(dictionary, r, [key]);
                    break;
                case ValueTuple<Tensor, bool> (var t, var persistent) when !t.IsInvalid && real.TryGetValue(Impl(t), out var r):
                    indexer.SetValue(dictionary, (r, persistent), [key]);
                    break;
            }
        }
    }
}
