using System.CommandLine;
using Transduce.Cli.Commands;

var root = new RootCommand("Transduce: encoder–decoder sequence-to-sequence models for .NET (train, prepare, translate, evaluate, score, serve, convert, average, doctor).")
{
    TrainCommand.Create(),
    PrepareCommand.Create(),
    TranslateCommand.Create(),
    EvaluateCommand.Create(),
    ScoreCommand.Create(),
    ServeCommand.Create(),
    ConvertCommand.Create(),
    AverageCommand.Create(),
    DoctorCommand.Create(),
};
return CliErrors.Run(() => root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false }));
