using System.CommandLine;
using Transduce.Inference;

namespace Transduce.Cli.Commands;

internal static class TranslateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint directory.", Required = true };
        var sentences = new Argument<string[]>("sentences") { Description = "Sentences to translate; none: read one per line from standard input.", Arity = ArgumentArity.ZeroOrMore };
        var batch = new Option<int>("--batch-size") { Description = "Sentences decoded together.", DefaultValueFactory = _ => 64 };
        var threads = new Option<int?>("--threads") { Description = "libtorch intra-op threads." };
        var command = new Command("translate", "Translate sentences (arguments, or lines of standard input) to standard output, one per line.")
        {
            model, sentences, batch, threads,
        };
        command.SetAction(r =>
        {
            if (r.GetValue(threads) is int n) TorchSharp.torch.set_num_threads(n);
            using var translator = Translator.Load(r.GetValue(model)!);
            var options = new TranslationOptions { BatchSize = r.GetValue(batch) };
            var args = r.GetValue(sentences) ?? [];
            if (args.Length > 0)
            {
                foreach (var line in translator.Translate(args, options)) Console.WriteLine(line);
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
                foreach (var line in translator.Translate(chunk, options)) Console.WriteLine(line);
                chunk.Clear();
            }
        });
        return command;
    }
}
