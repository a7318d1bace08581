using Transduce.Architecture;

namespace Transduce.Models;

/// <summary>
/// An encoder that encodes in eval mode, with gradients off, through packed copies of its weights (the Transformer's and,
/// from a few sentences up, the GRU's), as <see cref="PackedDecoder{TState}"/> decodes: packed on demand, packed again
/// when a weight or the compute type changed, released when the encoder leaves eval mode or is disposed. Training and
/// any pass with gradients on run the modules.
/// </summary>
internal abstract class PackedEncoder : Encoder, IPackedModule
{
    private readonly PlanCache plans = new();

    /// <summary>Creates an encoder registered under <paramref name="name"/>.</summary>
    protected PackedEncoder(string name) : base(name) { }

    /// <summary>
    /// The number type the weights are packed in (float32 by default); an encoder that takes reduced types exposes it as
    /// <see cref="IReducedPrecisionModule.ComputeType"/>.
    /// </summary>
    private protected ComputeType PackedType
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

    /// <summary>The plan packed last, or null (tests read which kernels it holds).</summary>
    internal IPackedPlan? CurrentPlan => plans.Current;

    /// <summary>Leaving or entering eval mode drops the packed weights (they are packed again when next needed).</summary>
    public override void train(bool train = true)
    {
        plans.Drop();
        base.train(train);
    }

    /// <summary>Disposing the encoder also releases its packed weights.</summary>
    protected override void Dispose(bool disposing)
    {
        if (disposing) plans.Drop();
        base.Dispose(disposing);
    }

    /// <summary>
    /// The packed weights for this pass, or null when the modules must run (training, gradients on, or packed paths
    /// switched off by <see cref="DecodingKernels.Packed"/>); <paramref name="pack"/> packs them for a compute type and
    /// weights version when needed.
    /// </summary>
    private protected TPlan? Plan<TPlan>(Func<ComputeType, long, TPlan> pack) where TPlan : class, IPackedPlan =>
        PlanCache.Applies(this) ? plans.Get(parameters(), version => pack(plans.ComputeType, version)) : null;
}
