using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Transduce.Training;

/// <summary>
/// TorchSharp's <see cref="Adam"/> update, clipping and gradient zeroing over flat buffers: every trained parameter
/// becomes a view into one float32 buffer, its gradient a view into a second (which autograd accumulates into in
/// place) and Adam's two moments views into two more. A step is then a handful of operations over 7.6 M values instead
/// of seven per parameter tensor, clipping one norm, zeroing one fill. The arithmetic is Adam's, element by element in
/// the same order (m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²; p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)), so the
/// weights are those of <see cref="Adam.step"/>; clipping is libtorch's <c>clip_grad_norm_</c> (the norm of all gradients
/// together, scaled by max / (norm + 10⁻⁶) when that is below 1), its norm summed in another order.
/// </summary>
/// <remarks>
/// The <see cref="Adam"/> it is made from keeps owning the state: its per-parameter moments are replaced by views of the
/// flat moments and its step counters are kept current, so <see cref="OptimizerHelper.save_state_dict(System.IO.BinaryWriter)"/>
/// writes the checkpoint format it always wrote. Make this after loading a saved state into the optimiser. Every
/// parameter given is updated at every step: one no loss reaches has a zero gradient, which leaves it where it is as
/// long as its moments are zero (TorchSharp's Adam skips a parameter whose gradient was never made).
/// </remarks>
internal sealed class FlatAdam : IDisposable
{
    private readonly Adam optimizer;
    private readonly Adam.State[] states;
    private readonly Tensor parameters, gradients, exp_avg, exp_avg_sq;
    private readonly double beta1, beta2, eps;
    private long step;

    private FlatAdam(Adam optimizer, Adam.State[] states, Tensor parameters, Tensor gradients, Tensor exp_avg, Tensor exp_avg_sq,
        Adam.Options options, long step)
    {
        this.optimizer = optimizer;
        this.states = states;
        this.parameters = parameters;
        this.gradients = gradients;
        this.exp_avg = exp_avg;
        this.exp_avg_sq = exp_avg_sq;
        beta1 = options.beta1!.Value;
        beta2 = options.beta2!.Value;
        eps = options.eps!.Value;
        this.step = step;
    }

    /// <summary>Values in the flat buffers.</summary>
    public long Count => parameters.numel();

    /// <summary>
    /// Moves <paramref name="trained"/> (the optimiser's one parameter group, in its order), their gradients and the
    /// optimiser's moments into flat buffers; null, changing nothing, where the update is not plain Adam over float32
    /// CPU tensors at one step count (weight decay, AMSGrad, maximise, several groups, other types or devices).
    /// </summary>
    public static FlatAdam? TryCreate(Adam optimizer, IReadOnlyList<Parameter> trained)
    {
        if (trained.Count == 0 || optimizer.ParamGroups.Count() != 1) return null;
        if (optimizer.ParamGroups.Single() is not Adam.ParamGroup group) return null;
        var options = group.Options;
        if (options.weight_decay is not (null or 0) || options.amsgrad == true || options.maximize == true) return null;
        var states = optimizer.state_dict().State.OfType<Adam.State>().ToArray();
        if (states.Length != trained.Count || states.Any(s => s.step != states[0].step)) return null;
        for (int i = 0; i < trained.Count; i++)
        {
            var p = trained[i];
            if (p.dtype != ScalarType.Float32 || p.device_type != DeviceType.CPU || !p.requires_grad
                || !p.shape.SequenceEqual(states[i].exp_avg.shape) || states[i].exp_avg.dtype != ScalarType.Float32)
                return null;
        }
        long total = trained.Sum(p => p.numel());
        var flatParameters = empty(total, ScalarType.Float32);
        var flatGradients = zeros(total, ScalarType.Float32);
        var flatExpAvg = empty(total, ScalarType.Float32);
        var flatExpAvgSq = empty(total, ScalarType.Float32);
        using (no_grad())
        {
            long offset = 0;
            for (int i = 0; i < trained.Count; i++)
            {
                var p = trained[i];
                long n = p.numel();
                Tensor View(Tensor flat)
                {
                    using var piece = flat.narrow(0, offset, n);
                    return piece.view(p.shape);
                }
                using (var view = View(flatParameters)) view.copy_(p);
                // The parameter object (which the modules, and a tied projection, hold) now lives in the flat buffer.
                using (var view = View(flatParameters)) p.set_(view);   // in place: returns p itself
                using (var view = View(flatExpAvg)) view.copy_(states[i].exp_avg);
                using (var view = View(flatExpAvgSq)) view.copy_(states[i].exp_avg_sq);
                states[i].exp_avg.Dispose();
                states[i].exp_avg_sq.Dispose();
                states[i].exp_avg = View(flatExpAvg);
                states[i].exp_avg_sq = View(flatExpAvgSq);
                using var gradient = View(flatGradients);
                using (var old = p.grad)
                    if (old is not null) gradient.copy_(old);
                p.grad = gradient;
                offset += n;
            }
        }
        return new FlatAdam(optimizer, states, flatParameters, flatGradients, flatExpAvg, flatExpAvgSq, options, states[0].step);
    }

    /// <summary>Zeroes every gradient in place (they stay views of the flat buffer, which autograd adds into).</summary>
    public void ZeroGrad() => gradients.zero_();

    /// <summary>libtorch's <c>clip_grad_norm_</c> over all gradients together; returns their norm before clipping.</summary>
    public double ClipGradNorm(double maxNorm)
    {
        double norm;
        using (var total = gradients.norm()) norm = total.item<float>();
        double coefficient = maxNorm / (norm + 1e-6);
        if (coefficient < 1) gradients.mul_(coefficient);
        return norm;
    }

    /// <summary>One Adam update of every parameter at the group's current learning rate.</summary>
    public void Step()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        double lr = optimizer.ParamGroups.Single().LearningRate;
        step++;
        foreach (var state in states) state.step = step;
        double biasCorrection1 = 1 - Math.Pow(beta1, step);
        double biasCorrection2 = 1 - Math.Pow(beta2, step);
        exp_avg.mul_(beta1).add_(gradients, alpha: 1 - beta1);
        exp_avg_sq.mul_(beta2).addcmul_(gradients, gradients, value: 1 - beta2);
        var denominator = exp_avg_sq.sqrt().div_(Math.Sqrt(biasCorrection2)).add_(eps);
        parameters.addcdiv_(exp_avg, denominator, value: -lr / biasCorrection1);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        // The parameters, gradients and the optimiser's moments are views that keep the buffers' storage alive.
        parameters.Dispose();
        gradients.Dispose();
        exp_avg.Dispose();
        exp_avg_sq.Dispose();
    }
}
