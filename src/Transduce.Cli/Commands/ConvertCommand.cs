using System.CommandLine;
using Transduce.Models.Transformer.Marian;

namespace Transduce.Cli.Commands;

internal static class ConvertCommand
{
    public static Command Create()
    {
        var from = new Option<string>("--from") { Description = "Format of the input folder: marian (Hugging Face MarianMT / OPUS-MT).", Required = true };
        from.AcceptOnlyFromAmong("marian");
        var input = new Argument<string>("folder") { Description = "The model folder to convert." };
        var output = new Option<string>("--out") { Description = "Transduce checkpoint directory to write.", Required = true };
        var command = new Command("convert", "Convert a pretrained model folder into a native Transduce checkpoint.") { from, input, output };
        command.SetAction(r =>
        {
            using var checkpoint = MarianConvert.ToCheckpoint(r.GetValue(input)!);
            checkpoint.Save(r.GetValue(output)!);
            var config = (Models.Transformer.TransformerConfig)checkpoint.ModelConfig;
            Console.WriteLine($"converted {r.GetValue(input)} → {r.GetValue(output)} ({config.Layers}+{config.DecoderLayerCount} layers, " +
                              $"d_model {config.HiddenSize}, vocabulary {checkpoint.TargetVocabulary.Count:N0})");
            return 0;
        });
        return command;
    }
}
