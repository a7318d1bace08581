using Transduce.Architecture;
using Transduce.Native;
using static TorchSharp.torch;

namespace Transduce.Models;

/// <summary>Packed copies of a decoder's weights for its eval-mode step, tagged with the weights' version when packed.</summary>
internal interface IPackedPlan : IDisposable
{
    /// <summary>The sum of the weights' version counters when they were packed (see <see cref="WeightVersions"/>).</summary>
    long Version { get; }
}

/// <summary>
/// A decoder that decodes in eval mode through packed copies of its weights in a chosen <see cref="ComputeType"/>
/// (the GRU and the Transformer): packed on demand, packed again when the compute type or a weight changed, released when
/// the decoder leaves eval mode or is disposed. Training always runs the modules.
/// </summary>
/// <typeparam name="TState">The decoder's state.</typeparam>
internal abstract class PackedDecoder<TState> : Decoder<TState>, IReducedPrecisionModule, IPackedModule where TState : IDecoderState
{
    private readonly PlanCache plans = new();

    /// <summary>Creates a decoder registered under <paramref name="name"/>.</summary>
    protected PackedDecoder(string name) : base(name) { }

    /// <summary>
    /// The number type of the linear layers' products when decoding in eval mode (<see cref="ComputeType.Float32"/> by
    /// default). Training always runs the modules in float32.
    /// </summary>
    public ComputeType ComputeType
    {
        get => plans.ComputeType;
        set => plans.ComputeType = value;
    }

    /// <summary>The kernels the packed path may use (<see cref="DecodingKernels.Auto"/> by default); a change drops the packed weights.</summary>
    public DecodingKernels Kernels
    {
        get => plans.Kernels;
        set => plans.Kernels = value;
    }

    /// <summary>Leaving or entering eval mode drops the packed decoding weights (they are packed again when next needed).</summary>
    public override void train(bool train = true)
    {
        plans.Drop();
        base.train(train);
    }

    /// <summary>Disposing the decoder also releases its packed decoding weights.</summary>
    protected override void Dispose(bool disposing)
    {
        if (disposing) plans.Drop();
        base.Dispose(disposing);
    }

    /// <summary>
    /// The packed weights for this decoding, or null when the modules must run (training, or packed decoding switched off
    /// by <see cref="DecodingKernels.Packed"/>). <paramref name="pack"/> packs them for a compute type and weights version
    /// when there are none yet, or when the compute type or a weight changed since.
    /// </summary>
    private protected TPlan? Plan<TPlan>(Func<ComputeType, long, TPlan> pack) where TPlan : class, IPackedPlan =>
        PlanCache.Applies(this) ? plans.Get(parameters(), version => pack(plans.ComputeType, version)) : null;

    /// <summary>The plan packed last, or null (tests read which kernels it holds).</summary>
    internal IPackedPlan? CurrentPlan => plans.Current;

    /// <summary>The weights packed for the decoding under way (by <see cref="Plan{TPlan}"/>), or null; steps use them as they are.</summary>
    private protected TPlan? Packed<TPlan>() where TPlan : class, IPackedPlan => PlanCache.Applies(this) ? plans.Current as TPlan : null;
}

/// <summary>
/// One module's packed eval-mode weights (<see cref="IPackedPlan"/>) and the compute type and kernels they are packed
/// for: packed on demand, packed again when a weight changed since (their version counters, <see cref="WeightVersions"/>;
/// where libtorch does not expose them, the weights count as unchanged), dropped when the compute type or the kernels
/// change. The owner drops them too when it leaves eval mode or is disposed.
/// </summary>
internal sealed class PlanCache
{
    /// <summary>The version a plan is tagged with when the weights' version counters cannot be read.</summary>
    public const long UnknownVersion = -1;

    [ThreadStatic] private static DecodingKernels? packing;

    private IPackedPlan? plan;
    private ComputeType computeType = ComputeType.Float32;
    private DecodingKernels kernels = DecodingKernels.Auto;

    /// <summary>
    /// The kernels of the plan being packed on this thread (inside <see cref="Get{TPlan}"/>'s call of its pack function),
    /// else <see cref="DecodingKernels.Auto"/>: what <see cref="PackedLinear.Pack"/> and the plans read while packing.
    /// </summary>
    public static DecodingKernels Packing => packing ?? DecodingKernels.Auto;

    /// <summary>The kernels to pack for (<see cref="DecodingKernels.Auto"/> by default); a different choice drops the plan.</summary>
    public DecodingKernels Kernels
    {
        get => kernels;
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            if (value == kernels) return;
            kernels = value;
            Drop();
        }
    }

    /// <summary>The number type to pack in (float32 by default); changing it drops the plan.</summary>
    public ComputeType ComputeType
    {
        get => computeType;
        set
        {
            if (value == computeType) return;
            computeType = value;
            Drop();
        }
    }

    /// <summary>
    /// Whether <paramref name="module"/> runs its packed path: in eval mode with gradients off (decoding runs under
    /// inference mode). The packed weights are detached copies, so a forward pass that may be differentiated runs the
    /// modules, whose weights get their gradients.
    /// </summary>
    public static bool Applies(nn.Module module) => !module.training && !is_grad_enabled();

    /// <summary>The plan packed last, or null.</summary>
    public IPackedPlan? Current => plan;

    /// <summary>
    /// The plan for <paramref name="weights"/> as they are now, or null when packed paths are switched off
    /// (<see cref="DecodingKernels.Packed"/>). <paramref name="pack"/> packs them, given their version, when there is no
    /// plan yet or a weight changed since; <see cref="Packing"/> holds <see cref="Kernels"/> while it runs. Where version
    /// counters cannot be read the plan is tagged <see cref="UnknownVersion"/> and kept: packed once, not once per call.
    /// </summary>
    public TPlan? Get<TPlan>(IEnumerable<Tensor> weights, Func<long, TPlan> pack) where TPlan : class, IPackedPlan
    {
        if (!kernels.Packed) return null;
        long version = WeightVersions.Sum(weights) ?? UnknownVersion;
        if (plan is TPlan current && version == current.Version) return current;
        Drop();
        var outer = packing;
        packing = kernels;
        try
        {
            using (no_grad())
                plan = pack(version);
        }
        finally
        {
            packing = outer;
        }
        // Packing a large model makes gigabytes of temporaries (concatenated and normalised copies of each weight), which a
        // process that keeps freed memory (NativeMemory.KeepFreedMemory) would otherwise hold for good.
        Native.NativeMemory.ReleaseFreedMemory();
        return (TPlan)plan;
    }

    /// <summary>Releases the packed weights.</summary>
    public void Drop()
    {
        plan?.Dispose();
        plan = null;
    }
}
