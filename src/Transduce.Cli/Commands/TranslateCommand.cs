using System.CommandLine;
using Transduce.Inference;

namespace Transduce.Cli.Commands;

internal static class TranslateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint directory, or a Hugging Face MarianMT (OPUS-MT) folder.", Required = true };
        var sentences = new Argument<string[]>("sentences") { Description = "Sentences to translate; none: read one per line from standard input.", Arity = ArgumentArity.ZeroOrMore };
        var batch = new Option<int>("--batch-size") { Description = "Sentences decoded together.", DefaultValueFactory = _ => 64 };
        var threads = new Option<int?>("--threads") { Description = "libtorch intra-op threads." };
        var maxNew = new Option<int?>("--max-new-tokens") { Description = "At most N output tokens including </s>, whatever the source length (transformers' max_new_tokens)." };
        var beam = new Option<int>("--beam") { Description = "Beam size (1 = greedy).", DefaultValueFactory = _ => 1 };
        var nbest = new Option<int>("--n-best") { Description = "Print this many translations per sentence, tab-separated with their scores.", DefaultValueFactory = _ => 1 };
        var attention = new Option<string?>("--attention") { Description = "Write the cross-attention heatmap (source × target tokens) of the first sentence to this PNG." };
        var layer = new Option<int>("--attention-layer") { Description = "Decoder layer to show (negative counts from the last).", DefaultValueFactory = _ => -1 };
        var head = new Option<int?>("--attention-head") { Description = "Head to show (default: mean over heads)." };
        var command = new Command("translate", "Translate sentences (arguments, or lines of standard input) to standard output, one per line.")
        {
            model, sentences, batch, threads, maxNew, beam, nbest, attention, layer, head,
        };
        command.SetAction(r =>
        {
            if (r.GetValue(threads) is int n) TorchSharp.torch.set_num_threads(n);
            using var translator = Translator.Load(r.GetValue(model)!);
            var options = new TranslationOptions { BatchSize = r.GetValue(batch), Beam = r.GetValue(beam), NBest = r.GetValue(nbest), MaxNewTokens = r.GetValue(maxNew) };
            var args = r.GetValue(sentences) ?? [];
            if (r.GetValue(attention) is { } png)
            {
                if (args.Length == 0) throw new ArgumentException("--attention needs the sentence as an argument");
                var (_, map) = translator.TranslateWithAttention(args[0], options);
                if (map is null)
                    throw new ArgumentException($"the '{translator.Checkpoint.ModelConfig.Architecture}' architecture has no attention to show");
                var weights = map.Select(r.GetValue(layer), r.GetValue(head));
                Evaluation.Plots.SaveAttentionHeatmap(png, map.SourceTokens, map.TargetTokens, weights, $"cross-attention: {args[0]}");
                Console.Error.WriteLine($"attention heatmap: {png}");
            }
            if (args.Length > 0)
            {
                Write(args);
                return 0;
            }
            // Standard input: translate in chunks so output starts before the input ends.
            var chunk = new List<string>();
            string? text;
            while ((text = Console.In.ReadLine()) is not null)
            {
                chunk.Add(text);
                if (chunk.Count == 1024) Flush();
            }
            Flush();
            return 0;

            void Flush()
            {
                Write(chunk);
                chunk.Clear();
            }

            void Write(IReadOnlyList<string> input)
            {
                if (options.NBest <= 1)
                {
                    foreach (var line in translator.Translate(input, options)) Console.WriteLine(line);
                    return;
                }
                foreach (var list in translator.TranslateNBest(input, options))
                    Console.WriteLine(string.Join('\t', list.Select(h => FormattableString.Invariant($"{h.Text}\t{h.Score:F4}"))));
            }
        });
        return command;
    }
}
