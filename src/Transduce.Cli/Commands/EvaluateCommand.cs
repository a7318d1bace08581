using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Transduce.Translation;
using Transduce.IO;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Evaluation;
using Transduce.Inference;
using Transduce.Text;

namespace Transduce.Cli.Commands;

internal static class EvaluateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint directory.", Required = true };
        var test = new Option<string>("--test") { Description = "Test corpus (tab-separated source and reference).", Required = true };
        var maxPairs = new Option<int?>("--max-pairs") { Description = "Evaluate on the first N pairs only." };
        var batch = new Option<int>("--batch-size") { Description = "Sentences decoded together.", DefaultValueFactory = _ => 64 };
        var beam = BeamFlags.Beam("Beam size (1 = greedy). [default: the model's own: greedy unless a MarianMT folder sets num_beams]");
        var report = new Option<string?>("--report") { Description = "Also write the figures as JSON to this file." };
        var hypotheses = new Option<string?>("--hypotheses") { Description = "Write the translations to this file, one per line." };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of text." };
        var skipInvalid = new Option<bool>("--skip-invalid") { Description = "Skip malformed test lines (and count them)." };
        var computeType = new Option<string?>("--compute-type") { Description = "Number type of the model's linear layers in decoding (encoder and decoder): float32, bfloat16 or int8. [default: the checkpoint's, else float32]" };
        CliValues.OneOf(computeType, [.. Models.ComputeTypes.Names]);
        var prefix = new Option<string?>("--prefix") { Description = "Text put before every source sentence (a T5 / Flan-T5 task prefix, e.g. \"translate English to German: \"; quote it to keep the trailing space)." };
        var task = new Option<string?>("--task") { Description = "A task of the model (a T5 folder's task_specific_params, e.g. summarization, translation_en_to_de): its prefix and decoding settings (beam, lengths, no-repeat n-gram size, length penalty, early stopping), as a transformers pipeline for that task uses them; --prefix and the other flags win over it." };
        var kernels = KernelFlags.Create();
        var languages = LanguageFlags.Create();
        var rules = new DecodingRuleFlags();
        var command = new Command("evaluate", "Translate a test corpus and score it with corpus BLEU.")
        {
            model, test, maxPairs, batch, beam, report, hypotheses, json, skipInvalid, computeType, prefix, task, kernels, languages.Source, languages.Target,
        };
        foreach (var option in rules.Options) command.Options.Add(option);
        command.SetAction(r =>
        {
            string testPath = r.GetValue(test)!;
            var chosenKernels = KernelFlags.Read(r, kernels);
            var read = ParallelCorpus.Read(testPath, new CorpusReadOptions { MaxPairs = r.GetValue(maxPairs), SkipInvalid = r.GetValue(skipInvalid) });
            using var translator = Translator.Load(r.GetValue(model)!);
            if (Training.TrainingRun.DescribeWeights(r.GetValue(model)!) is { } which) Console.Error.WriteLine($"using {which}");
            string normalizer = translator.Checkpoint.TextConfig.Normalizer;
            var started = DateTime.UtcNow;
            var defaults = r.GetValue(task) is { } name ? translator.TaskOptions(name) : translator.DefaultOptions;
            int beamSize = r.GetValue(beam) ?? defaults.Beam;
            var chosenType = r.GetValue(computeType) is { } type ? Models.ComputeTypes.Parse(type) : translator.ComputeType;
            var outputs = translator.Translate(read.Pairs.Select(p => p.Source).ToList(),
                LanguageFlags.Apply(r, languages, rules.Apply(r, defaults)) with { BatchSize = r.GetValue(batch), Beam = beamSize, ComputeType = chosenType, Kernels = chosenKernels, KeepFreedMemory = true, Prefix = r.GetValue(prefix) });
            double seconds = (DateTime.UtcNow - started).TotalSeconds;
            var bleu = translator.Score(outputs, read.Pairs.Select(p => p.Target));
            if (r.GetValue(hypotheses) is { } hypPath) AtomicFile.WriteAllText(hypPath, string.Join('\n', outputs) + "\n");
            var figures = new Dictionary<string, object>
            {
                ["test"] = testPath, ["sentences"] = outputs.Count, ["skipped_lines"] = read.SkippedLines,
                ["bleu"] = Math.Round(bleu.Score, 2), ["signature"] = bleu.Signature, ["detail"] = bleu.ToString(),
                ["normalizer"] = normalizer, ["beam"] = beamSize, ["compute_type"] = Models.ComputeTypes.Name(chosenType), ["seconds"] = Math.Round(seconds, 2),
                ["sentences_per_second"] = Math.Round(outputs.Count / Math.Max(1e-9, seconds), 1),
            };
            string jsonText = JsonSerializer.Serialize(figures, new JsonSerializerOptions { WriteIndented = true });
            if (r.GetValue(report) is { } reportPath) AtomicFile.WriteAllText(reportPath, jsonText + "\n");
            if (r.GetValue(json)) Console.WriteLine(jsonText);
            else
            {
                string how = translator.ProducesNaturalText ? "(detokenised, cased: sacreBLEU 13a)" : $"(normalised tokens: {normalizer})";
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"BLEU = {bleu.Score:F2} on {outputs.Count} sentences of {testPath} {how}, {(beamSize > 1 ? $"beam {beamSize}" : "greedy")}"));
                Console.WriteLine(bleu.ToString());
                Console.WriteLine($"signature: {bleu.Signature}");
            }
            return 0;
        });
        return command;
    }
}
