namespace Transduce.Text;

/// <summary>
/// What a training run tells a <see cref="PairEncoding"/> beyond the text: the run's languages as its data section gives
/// them (<c>data.source_language</c>, <c>data.target_language</c>; a multilingual family reads them as its language codes,
/// looked up in the model's own code tables), and a task prefix written before each source (<c>data.source_prefix</c>).
/// </summary>
/// <param name="SourceLanguage">The source language, or null.</param>
/// <param name="TargetLanguage">The target language, or null.</param>
/// <param name="SourcePrefix">Text put before each source sentence (T5's task prefix), or null.</param>
/// <param name="SourceLanguageIds">A multilingual model's language code → source vocabulary id, or null.</param>
/// <param name="TargetLanguageIds">A multilingual model's language code → target vocabulary id, or null.</param>
internal sealed record PairEncodingContext(
    string? SourceLanguage = null, string? TargetLanguage = null, string? SourcePrefix = null,
    IReadOnlyDictionary<string, int>? SourceLanguageIds = null, IReadOnlyDictionary<string, int>? TargetLanguageIds = null);

/// <summary>
/// How a model family turns a training pair into the token ids of teacher forcing: the hook through which a pretrained
/// family (Marian, NLLB/M2M100, T5) keeps its own conventions when it is fine-tuned. A checkpoint carries one
/// (<c>Checkpoint.PairEncoding</c>; <see cref="Default"/> unless a family sets its own), saves its <see cref="Name"/> in
/// <c>config.json</c> (<c>pair_encoding</c>) and finds it again by that name (<see cref="FromName"/>) when loaded, so a
/// fine-tuned run that is resumed or fine-tuned again encodes as it started.
/// </summary>
/// <remarks>
/// <para>The ids <see cref="Source"/> and <see cref="Target"/> return are what batching frames: it appends
/// <see cref="SpecialIds.Eos"/> to both sides (cutting to the text's <c>max_steps</c>), starts the decoder input with
/// <see cref="SpecialIds.Bos"/> (the decoder start token) and shifts the labels by one. So a family puts everything
/// between those here: a language code before the source pieces (NLLB: <c>[src_lang] + pieces</c>), a language code
/// before the target pieces that the model learns to predict first (NLLB: labels <c>[tgt_lang] + pieces + &lt;/s&gt;</c>,
/// decoder input <c>[&lt;/s&gt;, tgt_lang] + pieces</c> with the decoder start &lt;/s&gt;), a task prefix as text before the
/// sentence (T5).</para>
/// <para><see cref="FixedParameters"/> names the parameters the family's own toolkit does not train (transformers' buffers,
/// such as Marian's <c>final_logits_bias</c>): a fine-tuning run keeps them bit-identical, as freezing does.</para>
/// <para>Families register their encodings (<see cref="Register"/>) from a module initializer, as they register their
/// folder formats; an unknown name in <c>config.json</c> is refused when the checkpoint is loaded.</para>
/// </remarks>
internal class PairEncoding
{
    private static readonly Dictionary<string, PairEncoding> Known = new(StringComparer.Ordinal);

    /// <summary>Today's encoding of every native model: the pipeline's source and target ids, the vocabulary's specials.</summary>
    public static PairEncoding Default { get; } = new("default");

    /// <summary>An encoding called <paramref name="name"/> (the value of <c>pair_encoding</c> in <c>config.json</c>).</summary>
    protected PairEncoding(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Name = name;
    }

    /// <summary>The name <c>config.json</c> stores.</summary>
    public string Name { get; }

    /// <summary>Parameters (by state-dict name) the family's toolkit keeps fixed while training; none by default.</summary>
    public virtual IReadOnlyCollection<string> FixedParameters => [];

    /// <summary>Refuses a run this family cannot encode (a missing language, say) with <see cref="ArgumentException"/> naming the key.</summary>
    public virtual void Check(PairEncodingContext context)
    {
    }

    /// <summary>
    /// The source ids of a training sentence, before the <c>&lt;eos&gt;</c> batching appends: the context's source prefix
    /// (if any) and the sentence as one text, as <c>TranslationOptions.Prefix</c> encodes it when translating.
    /// </summary>
    public virtual int[] Source(TextPipeline text, string sentence, PairEncodingContext context) =>
        text.EncodeSource(context.SourcePrefix is { } prefix ? prefix + sentence : sentence);

    /// <summary>The label ids of a training target, before the <c>&lt;eos&gt;</c> batching appends (the decoder input is <see cref="SpecialIds.Bos"/> then these).</summary>
    public virtual int[] Target(TextPipeline text, string sentence, PairEncodingContext context) => text.EncodeTarget(sentence);

    /// <summary>Padding, decoder start and end ids of training batches: the target vocabulary's by default.</summary>
    public virtual SpecialIds Ids(Vocabulary target) => new(target.PadId, target.BosId, target.EosId);

    /// <summary>Makes <paramref name="encoding"/> known by its name; a name taken already is refused.</summary>
    public static void Register(PairEncoding encoding)
    {
        ArgumentNullException.ThrowIfNull(encoding);
        lock (Known)
        {
            if (encoding.Name == Default.Name || !Known.TryAdd(encoding.Name, encoding))
                throw new ArgumentException($"a pair encoding called '{encoding.Name}' is registered already");
        }
    }

    /// <summary>The encoding called <paramref name="name"/>; <see cref="ArgumentException"/> naming the known ones otherwise.</summary>
    public static PairEncoding FromName(string name)
    {
        if (name == Default.Name) return Default;
        lock (Known)
        {
            return Known.TryGetValue(name, out var found) ? found
                : throw new ArgumentException($"unknown 'pair_encoding' '{name}' (known: {string.Join(", ", Known.Keys.Prepend(Default.Name))})");
        }
    }
}
