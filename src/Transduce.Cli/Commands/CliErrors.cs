using System.Text.Json;
using Transduce.Data;

namespace Transduce.Cli.Commands;

/// <summary>
/// Turns the errors a user can cause while a command runs (bad files, bad models, settings out of range) into one clear
/// line and exit code 1, never a stack trace. A command line that is not understood never gets here: it is a usage
/// error, exit code 2 (<see cref="CliProgram"/>).
/// </summary>
internal static class CliErrors
{
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (IsUserError(e))
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    internal static bool IsUserError(Exception e) => e is CorpusFormatException or InvalidDataException or FileNotFoundException
        or DirectoryNotFoundException or ArgumentException or JsonException or UnauthorizedAccessException
        or HttpRequestException or OperationCanceledException or IOException;
}
