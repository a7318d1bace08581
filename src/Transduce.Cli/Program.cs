using Transduce.Cli.Commands;

return CliProgram.Run(args);
