using Transduce.Checkpoints;
using Transduce.Import.HuggingFace;
using Transduce.Models;
using Transduce.Models.Transformer;

namespace Transduce.Import.M2M100;

/// <summary>
/// Loads a transformers <c>M2M100ForConditionalGeneration</c> folder (NLLB-200 and M2M100 share it): <c>config.json</c>
/// onto a <see cref="TransformerConfig"/>, the weights (one file or shards) onto a <see cref="TransformerSeq2Seq"/>, the
/// decoding settings and the tokenizer (<see cref="NllbTokenizer"/> or <see cref="M2M100Tokenizer"/>). Every problem throws one line naming the file and the field.
/// </summary>
/// <remarks>
/// <para><b>Architecture</b> (transformers' <c>modeling_m2m_100.py</c>): pre-norm blocks x + f(LN(x)) with a final LayerNorm
/// after each stack (<c>model.{encoder,decoder}.layer_norm</c>); one embedding shared by both stacks, × √d_model when
/// <c>scale_embedding</c>; fairseq's sinusoid table (<see cref="SinusoidLayout.Fairseq"/>) read at position p + pad + 1, as
/// <c>create_position_ids_from_input_ids</c> numbers the tokens of a right-padded batch; biases on every projection; logits
/// = <c>lm_head</c>(h), tied to the embedding unless <c>tie_word_embeddings</c> is false, no bias.</para>
/// </remarks>
internal static class M2M100Import
{
    /// <summary>The family's name in messages.</summary>
    public const string Family = "NLLB / M2M100";

    /// <summary>transformers' <c>model_type</c> for these folders.</summary>
    public const string ModelType = "m2m_100";

    /// <summary><c>M2M100Config</c>'s defaults for the special ids.</summary>
    public static readonly HfConfigDefaults Defaults = new(PadTokenId: 1, EosTokenId: 2, DecoderStartTokenId: 2, BosTokenId: 0);

    /// <summary>Loads the folder <paramref name="directory"/> as a ready-to-run model in eval mode.</summary>
    public static M2M100Model Load(string directory)
    {
        var folder = new HuggingFaceFolder(directory, Family);
        var json = folder.Config();
        var config = ReadModelConfig(json);
        var generation = HfGenerationConfig.Read(folder.Directory, Defaults, config.TargetVocabSize, config.MaxPositions);
        var tokenizer = MultilingualTokenizer.ForFolder(folder);
        if (tokenizer.Size > config.TargetVocabSize)
            throw new InvalidDataException(
                $"{folder.File(HuggingFaceFolder.TokenizerConfigFile)}: the tokenizer's ids reach {tokenizer.Size - 1}, beyond the model's 'vocab_size' {config.TargetVocabSize}");
        var weights = folder.Weights();
        config.CheckFits(weights.Describe(), json.Path);
        TransformerSeq2Seq model;
        using (ModelConstruction.WithoutWeights()) model = new TransformerSeq2Seq(config); // the files supply every weight
        try
        {
            WeightMapping.Copy(model, ParameterNames(config), weights, Family, zeroWhenMissing: _ => false, extra: (name, shape) =>
                // Older transformers saved the (computed) sinusoid tables; they are not read.
                name is "model.encoder.embed_positions.weights" or "model.decoder.embed_positions.weights"
                    && shape is [_, var width] && width == config.HiddenSize ? null : WeightMapping.Unexpected(name));
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return new M2M100Model(model, config, generation, tokenizer);
    }

    /// <summary>Maps an M2M100 <c>config.json</c> onto the <see cref="TransformerConfig"/> of the same network.</summary>
    public static TransformerConfig ReadModelConfig(HfJsonFile json)
    {
        string? modelType = json.String("model_type");
        if (modelType != ModelType) throw json.Error($"'model_type' is '{modelType}', not '{ModelType}'");
        var stacks = BartLayout.ReadStacks(json);
        int vocab = json.Size("vocab_size", ModelConfig.MaxVocabulary) ?? 128112;
        int pad = json.Int("pad_token_id") ?? 1;
        if (pad < 0 || pad >= vocab) throw json.Error($"'pad_token_id' {pad} is outside the vocabulary of {vocab}");
        var config = stacks with
        {
            SourceVocabSize = vocab,
            TargetVocabSize = vocab,
            Activation = HfActivations.Read(json, "relu"),
            Dropout = json.Double("dropout") ?? 0.1,
            PadId = pad,
            PreNorm = true,
            FinalNorm = true,
            AttentionBias = true,
            OutputBias = false,
            ScaleEmbedding = json.Bool("scale_embedding") ?? true,
            MaxPositions = json.Size("max_position_embeddings", ModelConfig.MaxPositionCount) ?? 1024,
            PositionalLayout = "fairseq",
            PositionOffset = pad + 1,
            ShareEmbeddings = true,
            TieEmbeddings = json.Bool("tie_word_embeddings") ?? true,
        };
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw json.Error(e.Message);
        }
        return config;
    }

    /// <summary>Ours → transformers' tensor names: the BART family's (<see cref="BartLayout.Names"/>) and the two final norms.</summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<string>> ParameterNames(TransformerConfig config)
    {
        var names = BartLayout.Names(config);
        foreach (var side in new[] { "encoder", "decoder" })
            foreach (var p in new[] { "weight", "bias" })
                names[$"{side}.finalNorm.{p}"] = [$"model.{side}.layer_norm.{p}"];
        return names;
    }
}
