using static TorchSharp.torch;

using Transduce.Models.Transformer;

namespace Transduce.Import.HuggingFace;

/// <summary>Moves an imported model's vocabulary rows into our layout (<c>&lt;pad&gt; &lt;bos&gt; &lt;eos&gt; &lt;unk&gt;</c> first).</summary>
internal static class VocabularyRemap
{
    /// <summary>
    /// A new model of <paramref name="config"/> (eval mode) with <paramref name="from"/>'s weights, the embedding and output rows
    /// taken in the order of <paramref name="sourceMap"/> / <paramref name="targetMap"/> (for each of our ids, the row it takes).
    /// </summary>
    public static TransformerSeq2Seq Reindex(TransformerSeq2Seq from, TransformerConfig config, int[] sourceMap, int[] targetMap)
    {
        var model = new TransformerSeq2Seq(config);
        try
        {
            using var _ = no_grad();
            using var sourceIndex = tensor(sourceMap.Select(i => (long)i).ToArray());
            using var targetIndex = tensor(targetMap.Select(i => (long)i).ToArray());
            var original = from.state_dict();
            foreach (var (name, to) in model.state_dict())
            {
                Tensor? index = name switch
                {
                    "encoder.embedding.weight" => sourceIndex,
                    "decoder.embedding.weight" or "decoder.dense.weight" or "decoder.dense.bias" => targetIndex,
                    _ => null,
                };
                if (index is null) to.copy_(original[name]);
                else
                {
                    using var rows = original[name].index_select(0, index);
                    to.copy_(rows);
                }
            }
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return model;
    }
}
