using System.CommandLine;
using Transduce.Checkpoints;

namespace Transduce.Cli.Commands;

internal static class ConvertCommand
{
    public static Command Create()
    {
        var from = new Option<string>("--from")
        {
            Description = "Format of the input folder: hf (a Hugging Face folder: MarianMT / OPUS-MT, NLLB-200 / M2M100, T5 / Flan-T5); marian is the same.",
            Required = true,
        };
        CliValues.OneOf(from, ["hf", "marian"]);
        var input = new Argument<string>("folder") { Description = "The model folder to convert." };
        var output = new Option<string>("--out") { Description = "Transduce checkpoint directory to write.", Required = true };
        var computeType = new Option<string?>("--compute-type")
        {
            Description = "Store this number type as the checkpoint's default for decoding (float32, bfloat16, int8); translate, evaluate and serve use it unless told otherwise.",
        };
        CliValues.OneOf(computeType, [.. Models.ComputeTypes.Names]);
        var command = new Command("convert", "Convert a pretrained model folder into a native Transduce checkpoint.") { from, input, output, computeType };
        command.SetAction(r =>
        {
            using var converted = ForeignFormats.Convert(r.GetValue(input)!);
            var checkpoint = r.GetValue(computeType) is { } type ? converted.WithComputeType(Models.ComputeTypes.Parse(type)) : converted;
            checkpoint.Save(r.GetValue(output)!);
            Console.WriteLine($"converted {r.GetValue(input)} ({converted.TrainingInfo["converted_from"]}) → {r.GetValue(output)} ({checkpoint.ModelConfig.Layers}+{checkpoint.ModelConfig.DecoderLayerCount} layers, " +
                              $"d_model {checkpoint.ModelConfig.HiddenSize}, vocabulary {checkpoint.ModelConfig.TargetVocabSize:N0})");
            return 0;
        });
        return command;
    }
}
