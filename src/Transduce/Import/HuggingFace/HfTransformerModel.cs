using Transduce.Data;
using Transduce.Inference;
using static TorchSharp.torch;

using Transduce.Models;
using Transduce.Models.Transformer;
using Transduce.Text;

namespace Transduce.Import.HuggingFace;

/// <summary>
/// A Hugging Face Transformer encoder–decoder loaded onto a <see cref="TransformerSeq2Seq"/> (MarianMT, NLLB / M2M100): the
/// network, its configuration and decoding settings, with entry points that take transformers' <c>input_ids</c> /
/// <c>attention_mask</c> and decode as transformers' <c>generate</c> does.
/// </summary>
/// <remarks>
/// Generation matches <c>generate</c> for greedy and beam search (<c>early_stopping</c> true, false or "never"): decoding starts
/// from <c>decoder_start_token_id</c>; at most <see cref="HfGenerationConfig.NewTokenLimit"/> tokens follow it, the last
/// one forced to <c>&lt;eos&gt;</c> when <c>forced_eos_token_id</c> is set, else whatever it is (greedy search then
/// returns up to that many tokens without <c>&lt;eos&gt;</c>, and beam search finishes the best running beams there,
/// scored at that length: <see cref="LengthLimitRule.Stop"/>); <c>bad_words_ids</c>, <c>min_length</c> /
/// <c>min_new_tokens</c>, <c>no_repeat_ngram_size</c>, <c>repetition_penalty</c> and <c>forced_bos_token_id</c> apply as
/// transformers' logits processors do (<see cref="LogitsProcessors.Standard"/>);
/// beams are ranked by log-probability / L^<c>length_penalty</c> (<see cref="LengthNormalization.HuggingFace"/>).
/// </remarks>
internal class HfTransformerModel : IDisposable
{
    /// <summary>The network, in eval mode.</summary>
    public TransformerSeq2Seq Model { get; }

    /// <summary>The configuration <c>config.json</c> was mapped onto.</summary>
    public TransformerConfig Config { get; }

    /// <summary>The decoding settings of <c>generation_config.json</c>.</summary>
    public HfGenerationConfig Generation { get; }

    /// <summary>Wraps a loaded network with its configuration and decoding settings.</summary>
    protected HfTransformerModel(TransformerSeq2Seq model, TransformerConfig config, HfGenerationConfig generation)
    {
        Model = model;
        Config = config;
        Generation = generation;
    }

    /// <summary>Special ids for the searches: <c>Bos</c> is the decoder start token (Marian: <c>&lt;pad&gt;</c>; NLLB: <c>&lt;/s&gt;</c>).</summary>
    public SpecialIds Ids => new(Generation.PadTokenId, Generation.DecoderStartTokenId, Generation.EosTokenId);

    /// <summary>
    /// Source lengths from a right-padded transformers <c>attention_mask</c> (batch, steps) of 0/1; a mask with a 0 before a 1
    /// (left padding, holes) throws <see cref="ArgumentException"/>.
    /// </summary>
    public static Tensor ValidLengths(Tensor attentionMask)
    {
        using var scope = NewDisposeScope();
        var mask = attentionMask.to_type(ScalarType.Int64);
        var lengths = mask.sum(1);
        var prefix = arange(mask.shape[1], ScalarType.Int64, mask.device).unsqueeze(0).lt(lengths.unsqueeze(1)).to_type(ScalarType.Int64);
        if (!prefix.eq(mask).all().item<bool>()) // temporaries die with the scope
            throw new ArgumentException("attention_mask must be right-padded: ones for the tokens, then zeros", nameof(attentionMask));
        return lengths.MoveToOuterDisposeScope();
    }

    /// <summary>The encoder's last hidden state (batch, steps, d_model), padded positions included, as transformers returns it.</summary>
    public Tensor Encode(Tensor inputIds, Tensor attentionMask)
    {
        using var _ = no_grad();
        using var lengths = ValidLengths(attentionMask);
        return Model.Encoder.call(inputIds, lengths).Outputs;
    }

    /// <summary>Logits (batch, decoder steps, target vocabulary) for teacher-forced <paramref name="decoderInputIds"/> (which start with the decoder start token).</summary>
    public Tensor Logits(Tensor inputIds, Tensor attentionMask, Tensor decoderInputIds)
    {
        using var _ = no_grad();
        using var lengths = ValidLengths(attentionMask);
        return Model.call(inputIds, lengths, decoderInputIds);
    }

    /// <summary>
    /// The most output tokens (without <c>&lt;eos&gt;</c>) when <paramref name="newTokens"/> may follow the start token:
    /// one fewer when the last of them is a forced <c>&lt;eos&gt;</c>.
    /// </summary>
    private static int TokensBeforeEos(HfGenerationConfig generation, int? newTokens)
    {
        int limit = newTokens ?? generation.NewTokenLimit;
        if (limit < 1) throw new ArgumentException("at least one new token must be allowed", nameof(newTokens));
        return generation.ToSettings().LengthLimit == LengthLimitRule.Stop ? limit : limit - 1;
    }

    /// <summary>Greedy decoding as <c>generate(num_beams=1)</c>; per row the tokens after the start token, without <c>&lt;eos&gt;</c>.</summary>
    /// <param name="inputIds">(batch, steps) source ids, right-padded.</param>
    /// <param name="attentionMask">(batch, steps) 1 for tokens, 0 for padding.</param>
    /// <param name="maxNewTokens"><c>max_new_tokens</c>; null for the generation config's limit.</param>
    /// <param name="settings">Decoding settings for this call (e.g. with a target language forced); null for <see cref="Generation"/>.</param>
    public int[][] Greedy(Tensor inputIds, Tensor attentionMask, int? maxNewTokens = null, HfGenerationConfig? settings = null)
    {
        settings ??= Generation;
        using var lengths = ValidLengths(attentionMask);
        int max = TokensBeforeEos(settings, maxNewTokens);
        return GreedySearch.Decode(Model, inputIds, lengths, Ids, Enumerable.Repeat(max, (int)inputIds.shape[0]).ToArray(), settings.ToSettings().Greedy())
            .Select(h => h.Tokens).ToArray();
    }

    /// <summary>The beam options that reproduce <c>generate</c> with this model's settings.</summary>
    public BeamSearchOptions BeamOptions(int? numBeams = null, int nBest = 1, HfGenerationConfig? settings = null) =>
        (settings ?? Generation).ToSettings().Beam(numBeams ?? (settings ?? Generation).NumBeams, nBest);

    /// <summary>
    /// Beam search as <c>generate(num_beams=k)</c> with the folder's <c>early_stopping</c> (or <paramref name="earlyStopping"/>);
    /// per row the <paramref name="nBest"/> best hypotheses, tokens without the start token and <c>&lt;eos&gt;</c>.
    /// </summary>
    /// <param name="inputIds">(batch, steps) source ids, right-padded.</param>
    /// <param name="attentionMask">(batch, steps) 1 for tokens, 0 for padding.</param>
    /// <param name="numBeams"><c>num_beams</c>; null for the generation config's.</param>
    /// <param name="maxNewTokens"><c>max_new_tokens</c>; null for the generation config's limit.</param>
    /// <param name="nBest">Hypotheses returned per row.</param>
    /// <param name="earlyStopping"><c>early_stopping</c>; null for the generation config's.</param>
    /// <param name="settings">Decoding settings for this call (e.g. with a target language forced); null for <see cref="Generation"/>.</param>
    public IReadOnlyList<IReadOnlyList<Hypothesis>> Beam(Tensor inputIds, Tensor attentionMask, int? numBeams = null, int? maxNewTokens = null,
        int nBest = 1, EarlyStopping? earlyStopping = null, HfGenerationConfig? settings = null)
    {
        settings ??= Generation;
        using var lengths = ValidLengths(attentionMask);
        int max = TokensBeforeEos(settings, maxNewTokens);
        var options = BeamOptions(numBeams, nBest, settings);
        if (earlyStopping is { } rule) options = options with { EarlyStopping = rule };
        return BeamSearch.Decode(Model, inputIds, lengths, Ids, Enumerable.Repeat(max, (int)inputIds.shape[0]).ToArray(), options);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Model.Dispose();
        GC.SuppressFinalize(this);
    }
}
