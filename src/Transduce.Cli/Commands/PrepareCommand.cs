using System.CommandLine;
using Transduce.Training;

namespace Transduce.Cli.Commands;

/// <summary>
/// <c>prepare</c>: the run configuration as <c>train</c> builds it (preset, file, the same flags), handed to
/// <see cref="TrainingRun.Prepare"/>, which writes the run directory at update 0 with the token ids as shards.
/// </summary>
internal static class PrepareCommand
{
    public static Command Create()
    {
        var preset = TrainFlags.PresetOption();
        var config = TrainFlags.ConfigOption();
        var output = new Option<string?>("--out") { Description = "Run directory to write (required)." };
        var overwrite = new Option<bool>("--overwrite") { Description = "Start afresh in an --out directory that holds an earlier run." };
        var shardPairs = new Option<int>("--shard-pairs") { Description = "Sentence pairs per shard file.", DefaultValueFactory = _ => 1_000_000 };
        var command = new Command("prepare",
            "Do what train does before its first update (read and tokenize the corpus, learn the vocabularies and subwords, initialise " +
            "the model under the seed) and write the run directory at update 0 — config.json, vocabularies, subword model, model.safetensors, " +
            "train.json, trainer.json — with the token ids as memory-mappable shards in OUT/data, for the PyTorch DDP trainer in python/ " +
            "or train --resume OUT. Takes train's flags.") { preset, config, output, overwrite, shardPairs };
        foreach (var flag in TrainFlags.All) command.Options.Add(flag.Option);
        command.SetAction(r =>
        {
            var settings = TrainFlags.Compose(r, preset, config);
            int perShard = r.GetValue(shardPairs);
            if (perShard < 1) throw new ArgumentException("prepare: --shard-pairs must be at least 1");
            string outDir = r.GetValue(output) ?? throw new ArgumentException("prepare: --out DIR is required");
            using var run = new TrainingRun(settings, outDir, overwrite: r.GetValue(overwrite));
            run.Message += (_, text) => Console.WriteLine(text);
            run.Warning += (_, text) => Console.Error.WriteLine(text);
            var summary = run.Prepare(perShard);
            Console.WriteLine($"wrote {summary.Directory}: train it with torchrun … -m transduce_torch.train {outDir} --out RUN, or transduce train --resume {outDir}");
            return 0;
        });
        return command;
    }
}
