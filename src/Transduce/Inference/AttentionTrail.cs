using static TorchSharp.torch;

namespace Transduce.Inference;

/// <summary>One decoding step's cross-attention of every row, copied to the CPU.</summary>
/// <param name="Weights">(rows, layers, heads, source steps), flattened.</param>
/// <param name="Layers">Decoder layers.</param>
/// <param name="Heads">Heads per layer.</param>
/// <param name="SourceSteps">Source positions of the batch (padding included).</param>
internal sealed record StepAttention(float[] Weights, int Layers, int Heads, int SourceSteps)
{
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
        return Weights.AsMemory(row * size, size);
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
