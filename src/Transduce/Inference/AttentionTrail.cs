using static TorchSharp.torch;

namespace Transduce.Inference;

/// <summary>One decoding step's cross-attention of every row, copied to the CPU: (rows, layers, heads, source steps).</summary>
internal sealed class StepAttention
{
    private readonly float[] weights;

    private StepAttention(float[] weights, int layers, int heads, int sourceSteps)
    {
        this.weights = weights;
        Layers = layers;
        Heads = heads;
        SourceSteps = sourceSteps;
    }

    public int Layers { get; }

    public int Heads { get; }

    public int SourceSteps { get; }

    /// <summary>Copies <paramref name="step"/> (rows, layers, heads, source steps), or null when there is none.</summary>
    public static StepAttention? From(Tensor? step)
    {
        if (step is null) return null;
        using var cpu = step.to(ScalarType.Float32).cpu().contiguous();
        return new StepAttention(cpu.data<float>().ToArray(), (int)step.shape[1], (int)step.shape[2], (int)step.shape[3]);
    }

    /// <summary>Row <paramref name="row"/>'s weights, [layer, head, source step] flattened.</summary>
    public ReadOnlyMemory<float> Row(int row)
    {
        int size = Layers * Heads * SourceSteps;
        return weights.AsMemory(row * size, size);
    }
}

/// <summary>
/// The cross-attention of one hypothesis so far, newest step first; hypotheses that share a prefix share its trail, so
/// extending or re-ranking a beam copies nothing.
/// </summary>
/// <param name="Step">The newest step's weights, [layer, head, source step] flattened.</param>
/// <param name="Earlier">The trail before it, or null.</param>
internal sealed record AttentionTrail(ReadOnlyMemory<float> Step, AttentionTrail? Earlier)
{
    /// <summary>Per layer [head, step, source position], the first <paramref name="sourceLength"/> positions of each step.</summary>
    public IReadOnlyList<float[,,]> ToWeights(StepAttention shape, int sourceLength)
    {
        var steps = new List<ReadOnlyMemory<float>>();
        for (var t = this; t is not null; t = t.Earlier) steps.Add(t.Step);
        steps.Reverse();
        var layers = new float[shape.Layers][,,];
        for (int l = 0; l < shape.Layers; l++)
        {
            var w = layers[l] = new float[shape.Heads, steps.Count, sourceLength];
            for (int h = 0; h < shape.Heads; h++)
                for (int s = 0; s < steps.Count; s++)
                {
                    var row = steps[s].Span.Slice((l * shape.Heads + h) * shape.SourceSteps, sourceLength);
                    for (int j = 0; j < sourceLength; j++) w[h, s, j] = row[j];
                }
        }
        return layers;
    }
}
