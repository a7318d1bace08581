using Transduce.Architecture;
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
internal abstract class PackedDecoder<TState> : Decoder<TState>, IReducedPrecisionModule where TState : IDecoderState
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
    /// by <c>TRANSDUCE_PACKED_DECODING=0</c>). <paramref name="pack"/> packs them for a compute type and weights version
    /// when there are none yet, or when the compute type or a weight changed since.
    /// </summary>
    private protected TPlan? Plan<TPlan>(Func<ComputeType, long, TPlan> pack) where TPlan : class, IPackedPlan =>
        PlanCache.Applies(this) ? plans.Get(parameters(), version => pack(plans.ComputeType, version)) : null;

    /// <summary>The weights packed for the decoding under way (by <see cref="Plan{TPlan}"/>), or null; steps use them as they are.</summary>
    private protected TPlan? Packed<TPlan>() where TPlan : class, IPackedPlan => PlanCache.Applies(this) ? plans.Current as TPlan : null;
}

/// <summary>
/// One module's packed eval-mode weights (<see cref="IPackedPlan"/>) and the compute type they are packed in: packed on
/// demand, packed again when a weight changed since (their version counters, <see cref="WeightVersions"/>), dropped when
/// the compute type changes. The owner drops them too when it leaves eval mode or is disposed.
/// </summary>
internal sealed class PlanCache
{
    private IPackedPlan? plan;
    private ComputeType computeType = ComputeType.Float32;

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
    /// (<c>TRANSDUCE_PACKED_DECODING=0</c>). <paramref name="pack"/> packs them, given their version, when there is no
    /// plan yet or a weight changed since.
    /// </summary>
    public TPlan? Get<TPlan>(IEnumerable<Tensor> weights, Func<long, TPlan> pack) where TPlan : class, IPackedPlan
    {
        if (!PackedDecoding.Enabled) return null;
        long? version = WeightVersions.Sum(weights);
        if (plan is TPlan current && version is long v && v == current.Version) return current;
        Drop();
        using (no_grad())
            plan = pack(version ?? -1);
        return (TPlan)plan;
    }

    /// <summary>Releases the packed weights.</summary>
    public void Drop()
    {
        plan?.Dispose();
        plan = null;
    }
}
