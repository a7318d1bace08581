using System.CommandLine;
using Spectre.Console;
using Transduce.Translation;
using Transduce.IO;
using Transduce.Checkpoints;
using Transduce.Inference;

namespace Transduce.Cli.Commands;

internal static class TranslateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint directory, or a Hugging Face MarianMT (OPUS-MT) or T5 / Flan-T5 folder.", Required = true };
        var sentences = new Argument<string[]>("sentences") { Description = "Sentences to translate (one that starts with '-' goes after '--'); none: read one per line from --input or standard input (an empty line gives an empty line).", Arity = ArgumentArity.ZeroOrMore };
        var input = new Option<string?>("--input") { Description = "Read sentences from this file (one per line) instead of standard input; shows a progress bar on stderr." };
        var output = new Option<string?>("--output") { Description = "Write translations to this file (complete, or not at all: written aside and renamed) instead of standard output." };
        var window = new Option<int>("--window")
        {
            Description = "Sentences read ahead and sorted by length before decoding; outputs keep input order.", DefaultValueFactory = _ => 4096,
            CustomParser = r => CliValues.Number<int>(r, min: 1) ?? 4096,
        };
        var batch = new Option<int>("--batch-size") { Description = "Sentences decoded together at most.", DefaultValueFactory = _ => 64 };
        var batchTokens = new Option<int?>("--batch-tokens") { Description = "Padded source tokens per batch at most (batches of short sentences get larger)." };
        var threads = new Option<int?>("--threads") { Description = "libtorch intra-op threads." };
        var maxNew = new Option<int?>("--max-new-tokens") { Description = "At most N output tokens including </s>, whatever the source length (transformers' max_new_tokens). [default: the model's own limit, e.g. a MarianMT folder's max_length − 1]" };
        var beam = BeamFlags.Beam("Beam size (1 = greedy). [default: the model's own: a MarianMT folder's num_beams, as transformers' generate() uses it, else greedy]");
        var nbest = BeamFlags.WithDefault("--n-best", "Print this many translations per sentence, tab-separated with their scores.", 1);
        var attention = new Option<string?>("--attention") { Description = "Write the cross-attention heatmap (source × target tokens) of the first sentence to this PNG." };
        var layer = new Option<int>("--attention-layer") { Description = "Decoder layer to show (negative counts from the last).", DefaultValueFactory = _ => -1 };
        var head = new Option<int?>("--attention-head") { Description = "Head to show. [default: the mean over heads]" };
        var computeType = new Option<string?>("--compute-type") { Description = "Number type of the model's linear layers in decoding (encoder and decoder): float32, bfloat16 or int8. [default: the checkpoint's, else float32]" };
        CliValues.OneOf(computeType, [.. Models.ComputeTypes.Names]);
        var prefix = new Option<string?>("--prefix") { Description = "Text put before every source sentence (a T5 / Flan-T5 task prefix, e.g. \"translate English to German: \"; quote it to keep the trailing space)." };
        var task = new Option<string?>("--task") { Description = "A task of the model (a T5 folder's task_specific_params, e.g. summarization, translation_en_to_de): its prefix and decoding settings (beam, lengths, no-repeat n-gram size, length penalty, early stopping), as a transformers pipeline for that task uses them; --prefix and the other flags win over it." };
        var kernels = KernelFlags.Create();
        var languages = LanguageFlags.Create();
        var rules = new DecodingRuleFlags();
        var verbose = new Option<bool>("--verbose") { Description = "Print the capability report (CPU features, versions, each kernel in use or its fallback) on standard error first." };
        var command = new Command("translate", "Translate sentences (arguments, a file or standard input), one output line per input line, in input order.")
        {
            model, sentences, input, output, window, batch, batchTokens, threads, maxNew, beam, nbest, attention, layer, head, computeType, prefix, task, kernels, languages.Source, languages.Target, verbose,
        };
        foreach (var option in rules.Options) command.Options.Add(option);
        command.SetAction(r =>
        {
            if (r.GetValue(threads) is int n) TorchSharp.torch.set_num_threads(n);
            var chosenKernels = KernelFlags.Read(r, kernels);
            if (r.GetValue(verbose)) KernelFlags.Print(Console.Error, chosenKernels);
            using var translator = Translator.Load(r.GetValue(model)!);
            if (Training.TrainingRun.DescribeWeights(r.GetValue(model)!) is { } which) Console.Error.WriteLine($"using {which}");
            var defaults = r.GetValue(task) is { } name ? translator.TaskOptions(name) : translator.DefaultOptions;
            var options = LanguageFlags.Apply(r, languages, rules.Apply(r, defaults)) with
            {
                BatchSize = r.GetValue(batch), BatchTokens = r.GetValue(batchTokens), Beam = r.GetValue(beam) ?? defaults.Beam,
                NBest = r.GetValue(nbest), MaxNewTokens = r.GetValue(maxNew) ?? defaults.MaxNewTokens,
                ComputeType = r.GetValue(computeType) is { } type ? Models.ComputeTypes.Parse(type) : defaults.ComputeType,
                Kernels = chosenKernels, KeepFreedMemory = true, Prefix = r.GetValue(prefix),
            };
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

            string? outputPath = r.GetValue(output);
            if (outputPath is null) return Translate(translator, options, args, r.GetValue(input), r.GetValue(window), Console.Out);
            int code = 0;
            AtomicFile.Write(outputPath, stream =>
            {
                using var writer = new StreamWriter(stream, new System.Text.UTF8Encoding(false), 1 << 16, leaveOpen: true) { NewLine = "\n" };
                code = Translate(translator, options, args, r.GetValue(input), r.GetValue(window), writer);
                writer.Flush();
            });
            return code;
        });
        return command;
    }

    /// <summary>
    /// Streams sentences through the translator a window at a time (each window sorted by length into batches inside
    /// the translator), writing one line per input line in input order as soon as its window is done.
    /// </summary>
    private static int Translate(Translator translator, TranslationOptions options, string[] args, string? inputPath, int window, TextWriter output)
    {
        void Write(IReadOnlyList<string> chunk)
        {
            // An empty (or blank) line gives an empty line, as a paragraph break should: it is not a sentence to translate.
            var sentences = chunk.Where(l => !string.IsNullOrWhiteSpace(l)).ToList();
            IReadOnlyList<string> lines = sentences.Count == 0 ? []
                : options.NBest <= 1 ? translator.Translate(sentences, options)
                : [.. translator.TranslateNBest(sentences, options)
                    .Select(list => string.Join('\t', list.Select(h => FormattableString.Invariant($"{h.Text}\t{h.Score:F4}"))))];
            int next = 0;
            foreach (string line in chunk) output.WriteLine(string.IsNullOrWhiteSpace(line) ? "" : lines[next++]);
        }

        if (args.Length > 0)
        {
            Write(args);
            return 0;
        }

        if (inputPath is not null && !File.Exists(inputPath)) throw new FileNotFoundException($"{inputPath}: no such file", inputPath);
        using var reader = inputPath is null ? Console.In : new StreamReader(inputPath, new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true));
        long total = inputPath is null ? 0 : File.ReadLines(inputPath).LongCount();
        bool showProgress = inputPath is not null && !Console.IsErrorRedirected;
        var chunk = new List<string>(Math.Min(window, 1 << 16));

        void Run(Action<long> advance)
        {
            string? line;
            while ((line = reader.ReadLine()) is not null)
            {
                chunk.Add(line);
                if (chunk.Count < window) continue;
                Write(chunk);
                output.Flush();
                advance(chunk.Count);
                chunk.Clear();
            }
            if (chunk.Count > 0)
            {
                Write(chunk);
                advance(chunk.Count);
            }
            output.Flush();
        }

        if (!showProgress)
        {
            Run(_ => { });
            return 0;
        }
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("translating", maxValue: Math.Max(1, total));
                Run(done => task.Increment(done));
            });
        return 0;
    }
}
