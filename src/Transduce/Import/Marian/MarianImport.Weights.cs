using static TorchSharp.torch;

using Transduce.Models;
using Transduce.Models.Transformer;

namespace Transduce.Import.Marian;

/// <summary>Mapping a MarianMT state dict onto a <see cref="TransformerSeq2Seq"/>, by parameter name.</summary>
internal static partial class MarianImport
{
    /// <summary>
    /// For each tensor of a <see cref="TransformerSeq2Seq"/> built from <paramref name="config"/>, the Hugging Face names that
    /// can supply it, preferred first (several when weights are shared or tied: they must then hold equal values).
    /// </summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<string>> ParameterNames(TransformerConfig config)
    {
        const string shared = "model.shared.weight", encoderEmbed = "model.encoder.embed_tokens.weight",
            decoderEmbed = "model.decoder.embed_tokens.weight", lmHead = "lm_head.weight";
        var names = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        string[] decoderEmbedding = config.ShareEmbeddings ? [shared, encoderEmbed, decoderEmbed] : [decoderEmbed];
        names["encoder.embedding.weight"] = config.ShareEmbeddings ? decoderEmbedding : [encoderEmbed, shared];
        names["decoder.embedding.weight"] = config.TieEmbeddings ? [.. decoderEmbedding, lmHead] : decoderEmbedding;
        names["decoder.dense.weight"] = config.TieEmbeddings ? names["decoder.embedding.weight"] : [lmHead];
        names["decoder.dense.bias"] = ["final_logits_bias"];
        if (config.ShareEmbeddings) names["encoder.embedding.weight"] = names["decoder.embedding.weight"];

        // Each block's sub-modules, ours and transformers' (attention blocks map their four projections).
        (string Ours, string Theirs)[] encoderBlock =
            [("attention", "self_attn"), ("addNorm1.norm", "self_attn_layer_norm"), ("ffn.dense1", "fc1"), ("ffn.dense2", "fc2"), ("addNorm2.norm", "final_layer_norm")];
        (string Ours, string Theirs)[] decoderBlock =
            [("SelfAttention", "self_attn"), ("addNorm1.norm", "self_attn_layer_norm"), ("CrossAttention", "encoder_attn"),
             ("addNorm2.norm", "encoder_attn_layer_norm"), ("ffn.dense1", "fc1"), ("ffn.dense2", "fc2"), ("addNorm3.norm", "final_layer_norm")];
        void Blocks(int count, string ours, string theirs, (string Ours, string Theirs)[] parts)
        {
            for (int i = 0; i < count; i++)
                foreach (var (o, t) in parts)
                {
                    bool attention = t.EndsWith("_attn", StringComparison.Ordinal);
                    var projections = attention ? new[] { ("W_q.", "q_proj."), ("W_k.", "k_proj."), ("W_v.", "v_proj."), ("W_o.", "out_proj.") } : [("", "")];
                    foreach (var (op, tp) in projections)
                        foreach (var p in new[] { "weight", "bias" })
                            names[$"{ours}.{i}.{o}.{op}{p}"] = [$"{theirs}.{i}.{t}.{tp}{p}"];
                }
        }
        Blocks(config.Layers, "encoder.blocks", "model.encoder.layers", encoderBlock);
        Blocks(config.DecoderLayerCount, "decoder.blocks", "model.decoder.layers", decoderBlock);
        return names;
    }

    /// <summary>
    /// Copies a MarianMT weights file (safetensors or pytorch_model.bin) into <paramref name="model"/>. Missing and unexpected tensors, shape mismatches and
    /// shared/tied tensors that differ are reported together, by their Hugging Face names, in one <see cref="InvalidDataException"/>.
    /// </summary>
    public static void LoadWeights(TransformerSeq2Seq model, TransformerConfig config, string path) =>
        CopyWeights(model, ParameterNames(config), path, "MarianMT",
            // transformers, too, starts a missing final_logits_bias at zero
            zeroWhenMissing: ours => ours == "decoder.dense.bias",
            // older checkpoints store the sinusoid table, which is computed, not read: only its shape is checked
            extra: (name, tensor) => name is "model.encoder.embed_positions.weight" or "model.decoder.embed_positions.weight"
                ? tensor.shape.SequenceEqual([config.MaxPositions, config.HiddenSize]) ? null
                    : $"tensor '{name}' has shape [{string.Join(", ", tensor.shape)}], the model needs [{config.MaxPositions}, {config.HiddenSize}]"
                : $"unexpected tensor '{name}'");

    /// <summary>
    /// Copies the weights file <paramref name="path"/> (safetensors or pytorch_model.bin) into <paramref name="model"/> by
    /// <paramref name="names"/> (ours → the file's candidates, preferred first; a (1, n) file tensor fills an (n) one).
    /// Missing and unexpected tensors, shape mismatches and shared/tied tensors that differ are reported together, by the
    /// file's names, in one <see cref="InvalidDataException"/> naming <paramref name="family"/>. A tensor of ours named by
    /// <paramref name="zeroWhenMissing"/> starts at zero when the file lacks it; a file tensor no name uses goes to
    /// <paramref name="extra"/>, which returns a problem or null (accepted and not read).
    /// </summary>
    internal static void CopyWeights(TransformerSeq2Seq model, IReadOnlyDictionary<string, IReadOnlyList<string>> names, string path, string family,
        Func<string, bool> zeroWhenMissing, Func<string, Tensor, string?> extra)
    {
        var loaded = ReadWeights(path);
        try
        {
            var expected = model.state_dict();
            var problems = new List<string>();
            var used = new HashSet<string>(StringComparer.Ordinal);
            var plan = new List<(Tensor Target, Tensor? Source)>();
            foreach (var (ours, target) in expected)
            {
                if (ours.EndsWith(".positions.table", StringComparison.Ordinal)) continue; // the sinusoid table is computed, not loaded
                if (!names.TryGetValue(ours, out var candidates))
                {
                    problems.Add($"model tensor '{ours}' has no Hugging Face counterpart (internal error)");
                    continue;
                }
                var present = candidates.Where(loaded.ContainsKey).ToList();
                used.UnionWith(present);
                if (present.Count == 0)
                {
                    if (zeroWhenMissing(ours)) plan.Add((target, null));
                    else problems.Add($"missing tensor '{candidates[0]}'" + (candidates.Count > 1 ? $" (or any of '{string.Join("', '", candidates.Skip(1))}')" : ""));
                    continue;
                }
                var source = loaded[present[0]];
                bool row = target.shape.Length == 1 && source.shape is [1, _];
                long[] shape = row ? [source.shape[1]] : source.shape;
                if (!shape.SequenceEqual(target.shape))
                {
                    long[] theirs = row ? [1, .. target.shape] : target.shape;
                    problems.Add($"tensor '{present[0]}' has shape [{string.Join(", ", source.shape)}], the model needs [{string.Join(", ", theirs)}]");
                    continue;
                }
                foreach (var other in present.Skip(1))
                    if (!SameValues(loaded[other], source))
                        problems.Add($"tensors '{present[0]}' and '{other}' must be one shared/tied weight (config) but differ");
                plan.Add((target, source));
            }
            foreach (var name in loaded.Keys.Where(k => !used.Contains(k)).OrderBy(k => k, StringComparer.Ordinal))
                if (extra(name, loaded[name]) is { } problem) problems.Add(problem);
            if (problems.Count > 0)
                throw new InvalidDataException($"{path}: weights do not fit the {family} config: {string.Join("; ", problems)}");
            using var _ = no_grad();
            foreach (var (target, source) in plan)
            {
                if (source is null)
                {
                    target.zero_();
                    continue;
                }
                using var view = source.reshape(target.shape);
                target.copy_(view);
            }
        }
        finally
        {
            foreach (var t in loaded.Values) t.Dispose();
        }
    }

    private static bool SameValues(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape)) return false;
        using var same = a.eq(b);
        using var all = same.all();
        return all.item<bool>();
    }
}
