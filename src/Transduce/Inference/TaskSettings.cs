namespace Transduce.Inference;

/// <summary>
/// A task a pretrained model was trained for (an entry of a Hugging Face <c>config.json</c>'s <c>task_specific_params</c>,
/// such as T5's <c>summarization</c> or <c>translation_en_to_de</c>): the text put before every source and the decoding
/// settings the task uses (the checkpoint's, with the entry's keys applied). Stored in a checkpoint's <c>config.json</c>
/// as <c>tasks</c>, next to <c>generation</c>.
/// </summary>
/// <param name="Prefix">Text put before every source sentence (empty: none).</param>
/// <param name="Generation">The decoding settings of the task.</param>
internal sealed record TaskSettings(string Prefix, GenerationSettings Generation)
{
    /// <summary>The most tasks a model may carry (t5-base has four).</summary>
    public const int MaxTasks = 64;

    /// <summary>The longest task name accepted.</summary>
    public const int MaxNameLength = 128;

    /// <summary>The longest prefix accepted (in UTF-16 code units).</summary>
    public const int MaxPrefixLength = 4096;

    /// <summary>Null when <paramref name="name"/> is an acceptable task name, else why not.</summary>
    public static string? CheckName(string name) =>
        name.Length == 0 ? "a task name must not be empty"
        : name.Length > MaxNameLength ? $"a task name is longer than {MaxNameLength} characters"
        : name.Any(char.IsControl) ? "a task name must not hold control characters"
        : null;
}
