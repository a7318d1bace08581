using System.CommandLine;
using Transduce.Checkpoints;

namespace Transduce.Cli.Commands;

internal static class AverageCommand
{
    public static Command Create()
    {
        var inputs = new Argument<string[]>("checkpoints") { Description = "Checkpoint directories of one model (e.g. OUT/history/update-*).", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string>("--out") { Description = "Checkpoint directory to write the averaged model to.", Required = true };
        var command = new Command("average", "Average the weights of several checkpoints of one model.") { inputs, output };
        command.SetAction(r =>
        {
            var dirs = r.GetValue(inputs)!;
            using var averaged = Checkpoint.Average(dirs);
            averaged.Save(r.GetValue(output)!);
            Console.WriteLine($"averaged {dirs.Length} checkpoints → {r.GetValue(output)}");
            return 0;
        });
        return command;
    }
}
