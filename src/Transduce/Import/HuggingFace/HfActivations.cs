namespace Transduce.Import.HuggingFace;

/// <summary>transformers' <c>activation_function</c> names (its <c>ACT2FN</c>) as our feed-forward kinds.</summary>
internal static class HfActivations
{
    /// <summary>
    /// The feed-forward kind for <c>activation_function</c> of <paramref name="json"/> (<paramref name="fallback"/> when absent, the
    /// config class's default); a name we do not implement throws naming the file and the key.
    /// </summary>
    public static string Read(HfJsonFile json, string fallback)
    {
        string activation = json.String("activation_function") ?? fallback;
        return activation switch
        {
            "swish" or "silu" => "swish",
            "gelu" => "gelu",
            "gelu_new" or "gelu_fast" or "gelu_pytorch_tanh" => "gelu_tanh",
            "relu" => "relu",
            _ => throw json.Error($"unknown 'activation_function' '{activation}' (supported: swish, silu, gelu, gelu_new, gelu_fast, gelu_pytorch_tanh, relu)"),
        };
    }
}
