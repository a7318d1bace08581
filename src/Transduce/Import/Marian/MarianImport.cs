using Transduce.Checkpoints;
using Transduce.Import.HuggingFace;

using Transduce.Models;
using Transduce.Models.Transformer;

namespace Transduce.Import.Marian;

/// <summary>
/// Loads a Hugging Face MarianMT folder (the format OPUS-MT models are published in): maps <c>config.json</c> onto a
/// <see cref="TransformerConfig"/> for <see cref="TransformerSeq2Seq"/>, the safetensors weights onto its parameters, and
/// reads <c>generation_config.json</c> and <c>vocab.json</c>. Every problem throws naming the file and what is wrong.
/// </summary>
/// <remarks>
/// <para><b>Architecture.</b> MarianMT is a post-norm Transformer: LN(x + sublayer(x)) after self-attention,
/// cross-attention and the FFN, no embedding or final LayerNorm; embeddings × √d_model (<c>scale_embedding</c>);
/// sinusoidal positions 0, 1, … with sines in the first half of the columns and cosines in the second
/// (<see cref="SinusoidLayout.Halves"/>); biases on all attention projections; logits = lm_head(h) + final_logits_bias.</para>
/// <para><b>Parameter names</b> (Hugging Face → Transduce), for layer i:
/// <c>model.shared.weight</c> / <c>model.encoder.embed_tokens.weight</c> → <c>encoder.embedding.weight</c>;
/// <c>model.shared.weight</c> / <c>model.decoder.embed_tokens.weight</c> → <c>decoder.embedding.weight</c>;
/// <c>lm_head.weight</c> → <c>decoder.dense.weight</c> (the decoder embedding when <c>tie_word_embeddings</c>);
/// <c>final_logits_bias</c> (1, V) → <c>decoder.dense.bias</c> (V) (zeros when absent, as in transformers);
/// <c>model.encoder.layers.i.self_attn.{q,k,v,out}_proj</c> → <c>encoder.blocks.i.attention.W_{q,k,v,o}</c>,
/// <c>self_attn_layer_norm</c> → <c>addNorm1.norm</c>, <c>fc1</c>/<c>fc2</c> → <c>ffn.dense1</c>/<c>ffn.dense2</c>,
/// <c>final_layer_norm</c> → <c>addNorm2.norm</c>;
/// <c>model.decoder.layers.i.self_attn</c> → <c>decoder.blocks.i.SelfAttention</c>, <c>self_attn_layer_norm</c> → <c>addNorm1.norm</c>,
/// <c>encoder_attn</c> → <c>CrossAttention</c>, <c>encoder_attn_layer_norm</c> → <c>addNorm2.norm</c>, <c>fc1</c>/<c>fc2</c> →
/// <c>ffn.dense1</c>/<c>ffn.dense2</c>, <c>final_layer_norm</c> → <c>addNorm3.norm</c>.
/// <c>model.{encoder,decoder}.embed_positions.weight</c>, present in older checkpoints, must have shape
/// (max_position_embeddings, d_model) and is otherwise not read: the table is computed.</para>
/// </remarks>
internal static partial class MarianImport
{
    /// <summary>File names inside a MarianMT folder.</summary>
    public const string ConfigFile = HuggingFaceFolder.ConfigFile, GenerationConfigFile = HuggingFaceFolder.GenerationConfigFile,
        WeightsFile = HuggingFaceWeights.SafetensorsFile, PyTorchWeightsFile = HuggingFaceWeights.PyTorchFile, VocabularyFile = "vocab.json",
        TargetVocabularyFile = "target_vocab.json", TokenizerConfigFile = HuggingFaceFolder.TokenizerConfigFile;

    /// <summary>The family's name in messages.</summary>
    public const string Family = "MarianMT";

    /// <summary>Loads the folder <paramref name="directory"/> as a ready-to-run model in eval mode.</summary>
    public static MarianModel Load(string directory)
    {
        var folder = new HuggingFaceFolder(directory, Family);
        string configPath = folder.File(ConfigFile);
        var config = ReadModelConfig(configPath);
        var generation = ReadGenerationConfig(folder.Directory, config);
        var (sourceVocabulary, targetVocabulary) = ReadVocabularies(folder.Directory, config, generation);
        var weights = folder.Weights();

        config.CheckFits(weights.Describe(), configPath);
        TransformerSeq2Seq model;
        using (ModelConstruction.WithoutWeights()) model = new TransformerSeq2Seq(config); // the files supply every weight
        try
        {
            LoadWeights(model, config, weights);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return new MarianModel(model, config, generation, sourceVocabulary, targetVocabulary);
    }
}
