using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Transduce.Training;

namespace Transduce.Cli.Commands;

/// <summary>
/// <c>transduce prepare</c>: does what <c>train</c> does before its first update (reads the corpus, learns the text
/// side, encodes the pairs, initialises the model under the seed) and writes it down for trainers in other processes —
/// a checkpoint folder with the run's settings and the token ids as shards (<see cref="Preparation"/>).
/// </summary>
internal static class PrepareCommand
{
    public static Command Create()
    {
        var command = new Command("prepare",
            "Tokenize a corpus exactly as train would and write a prepared run: config.json, vocabularies and subword model, " +
            "the initial model.safetensors, train.json, and the token ids as memory-mappable shards in OUT/data " +
            "(for the PyTorch DDP trainer in python/, or train --resume OUT).");
        var shardPairs = new Option<int>("--shard-pairs") { Description = "Sentence pairs per shard file.", DefaultValueFactory = _ => Data.TokenShards.DefaultShardPairs };
        command.Add(shardPairs);
        var settingsOf = TrainCommand.AddRunOptions(command);
        command.SetAction(r =>
        {
            var settings = settingsOf(r);
            int perShard = r.GetValue(shardPairs);
            if (perShard < 1) throw new ArgumentException("prepare: --shard-pairs must be at least 1");
            var (start, pairs, corpusName) = TrainCommand.Begin(settings);
            using var _ = start;
            var info = Preparation.Write(settings.Out, start, pairs, perShard, dir => TrainCommand.WriteStartState(dir, settings));
            AnsiConsole.MarkupLine(string.Create(CultureInfo.InvariantCulture,
                $"[bold]prepare[/] {Markup.Escape(corpusName)}: {info.Pairs:N0} pairs, {info.SourceTokens:N0}/{info.TargetTokens:N0} source/target tokens, " +
                $"vocab {info.SourceVocabularySize:N0}/{info.TargetVocabularySize:N0}, {info.Shards.Count} shard(s), " +
                $"{Markup.Escape(start.ModelConfig.Architecture)} {Trainer.DistinctParameters(start.Model).Sum(p => p.numel()):N0} parameters; wrote {Markup.Escape(settings.Out)}"));
            return 0;
        });
        return command;
    }
}
