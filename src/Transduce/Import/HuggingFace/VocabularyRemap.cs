using Transduce.Inference;
using Transduce.Models;
using Transduce.Models.Transformer;
using Transduce.Text;
using static TorchSharp.torch;

namespace Transduce.Import.HuggingFace;

/// <summary>
/// Moves an imported model's vocabulary rows into our layout (<c>&lt;pad&gt; &lt;bos&gt; &lt;eos&gt; &lt;unk&gt;</c> first).
/// A Hugging Face family has no <c>&lt;bos&gt;</c> of its own: its decoder starts from another token (Marian and T5: the pad
/// token; NLLB / M2M100: <c>&lt;/s&gt;</c>), so our <c>&lt;bos&gt;</c> row is a second copy of that token's row. As an input
/// it must be that copy; as an output it must not exist, or the duplicate logit would enter the softmax's normaliser and
/// shift every score from what transformers computes. Its output bias is therefore −∞: the distribution over the other
/// rows is transformers' exactly.
/// </summary>
internal static class VocabularyRemap
{
    /// <summary>
    /// A new model of <paramref name="config"/> (eval mode; it must have an output bias) with <paramref name="from"/>'s
    /// weights: the source embedding's rows taken in the order of <paramref name="sourceMap"/>, the target embedding's and
    /// output rows in the order of <paramref name="targetMap"/> (for each of our ids, the imported row), the rest as they
    /// are. A missing output bias in <paramref name="from"/> starts at zero; <paramref name="target"/>'s <c>&lt;bos&gt;</c>
    /// row gets −∞.
    /// </summary>
    public static TransformerSeq2Seq Reindex(TransformerSeq2Seq from, TransformerConfig config, int[] sourceMap, int[] targetMap, Vocabulary target)
    {
        if (!config.OutputBias) throw new ArgumentException("the remapped model needs an output bias to exclude its <bos> row", nameof(config));
        TransformerSeq2Seq model;
        using (ModelConstruction.WithoutWeights()) model = new TransformerSeq2Seq(config); // every weight comes from 'from'
        try
        {
            using var _ = no_grad();
            using var sourceIndex = tensor(sourceMap.Select(i => (long)i).ToArray());
            using var targetIndex = tensor(targetMap.Select(i => (long)i).ToArray());
            var original = from.state_dict();
            // Only the vocabulary rows are copied (reordered); every other tensor is shared with 'from', so the import holds
            // one copy of the network (views of the mapped files, where they came from there).
            ModelConstruction.Materialize(model, (name, like) =>
            {
                if (!original.TryGetValue(name, out var source))
                {
                    if (name != "decoder.dense.bias") throw new InvalidOperationException($"remapped model has '{name}', the imported one does not");
                    return zeros(like.shape);
                }
                Tensor? index = name switch
                {
                    "encoder.embedding.weight" => sourceIndex,
                    "decoder.embedding.weight" or "decoder.dense.weight" or "decoder.dense.bias" => targetIndex,
                    _ => null,
                };
                return index is null ? source.detach() : source.index_select(0, index);
            });
            foreach (var (name, t) in model.state_dict())
                if (name.EndsWith(".positions.table", StringComparison.Ordinal) && original.TryGetValue(name, out var table)) t.copy_(table);
            model.state_dict()["decoder.dense.bias"][target.BosId].fill_(double.NegativeInfinity);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return model;
    }

    /// <summary>
    /// A folder's decoding settings (<paramref name="settings"/>, in the folder's ids) in our ids, given
    /// <paramref name="targetMap"/> (for each of our ids, the folder's row): a banned token is banned in every row that
    /// spells it, a banned sequence in each spelling our rows give it, and the forced first token is the first of our rows
    /// that spells it other than <paramref name="bosId"/> (which is never an output).
    /// </summary>
    public static GenerationSettings Generation(GenerationSettings settings, int[] targetMap, int bosId)
    {
        var ours = Enumerable.Range(0, targetMap.Length).ToLookup(i => targetMap[i]);
        var banned = settings.BannedTokens.SelectMany(t => ours[t]).Distinct().ToArray();
        var sequences = settings.BannedSequences.SelectMany(q => q.Aggregate(
            (IEnumerable<int[]>)[[]], (prefixes, t) => prefixes.SelectMany(prefix => ours[t].Select(id => (int[])[.. prefix, id]))))
            .ToArray();
        int? forcedBos = settings.ForcedBosTokenId is int f ? ours[f].Where(id => id != bosId).Cast<int?>().FirstOrDefault() : null;
        return settings with { BannedTokens = banned, BannedSequences = sequences, ForcedBosTokenId = forcedBos };
    }
}
