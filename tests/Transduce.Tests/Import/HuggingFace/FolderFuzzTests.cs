using System.Text;
using System.Text.Json;
using Transduce.Checkpoints;
using Transduce.Tests.Fuzz;
using Transduce.Tests.Import.M2M100;
using Transduce.Tests.Import.T5;

namespace Transduce.Tests.Import.HuggingFace;

/// <summary>
/// A bounded fuzz run over the files of Hugging Face folders that the new families parse (config.json,
/// generation_config.json, tokenizer_config.json, the shard index, vocab.json): each run mutates one file of a tiny valid
/// folder — bytes flipped, cut short, numbers made huge, negative or fractional, values swapped for other JSON types,
/// keys deleted — and loads it. A load either works or fails with one of the exceptions the CLI reports as one line
/// (<see cref="Fuzzer.AssertOneLineUserError"/>); anything else (an index out of range, a null reference, an overflow, an allocation the
/// file asked for) fails the run and prints the seed that reproduces it.
/// </summary>
public sealed class FolderFuzzTests
{
    private const int RunsPerFolder = 300;

    public static TheoryData<string> Folders => new() { "nllb-tiny", "nllb-tiny-shards", "m2m100-tiny", "t5-tiny" };

    private static string Copy(string name, TempDir temp)
    {
        if (name == "t5-tiny") return T5ConvertTests.Assemble(name, temp);
        string from = name switch
        {
            "nllb-tiny" => M2M100ParityTests.Folder,
            "nllb-tiny-shards" => M2M100ParityTests.ShardsFolder,
            _ => M2M100ParityTests.M2M100Folder,
        };
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(temp.Path, Path.GetFileName(file)));
        return temp.Path;
    }

    private static readonly string[] Targets =
        ["config.json", "generation_config.json", "tokenizer_config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json", "vocab.json", "special_tokens_map.json"];

    private static readonly string[] Replacements =
        ["-1", "0", "2147483647", "-2147483648", "1e300", "0.5", "null", "true", "\"x\"", "[]", "{}", "[[1,2],[-5]]", "99999999999999999999"];

    [Theory]
    [MemberData(nameof(Folders))]
    public void MutatedFilesLoadOrFailWithOneLine(string name)
    {
        for (int seed = 0; seed < RunsPerFolder; seed++)
        {
            using var temp = new TempDir();
            string folder = Copy(name, temp);
            var random = new Random(seed * 7919 + name.Length);
            var present = Targets.Where(t => File.Exists(Path.Combine(folder, t))).ToArray();
            string target = Path.Combine(folder, present[random.Next(present.Length)]);
            File.WriteAllBytes(target, Mutate(File.ReadAllBytes(target), random));
            try
            {
                using var checkpoint = Checkpoint.Load(folder);
            }
            catch (Exception e)
            {
                Fuzzer.AssertOneLineUserError(e, $"{name}, seed {seed}, {Path.GetFileName(target)}");
            }
        }
    }

    private static byte[] Mutate(byte[] data, Random random)
    {
        switch (random.Next(4))
        {
            case 0: // flip bytes
                var copy = (byte[])data.Clone();
                for (int i = 0, n = 1 + random.Next(4); i < n && copy.Length > 0; i++) copy[random.Next(copy.Length)] = (byte)random.Next(256);
                return copy;
            case 1: // cut short
                return data[..random.Next(data.Length + 1)];
            default: // a value replaced (numbers most often), or a key deleted
                string text = Encoding.UTF8.GetString(data);
                var values = System.Text.RegularExpressions.Regex.Matches(text, @"-?\d+(\.\d+)?|true|false|null|""[^""]*""");
                if (values.Count == 0) return data;
                var m = values[random.Next(values.Count)];
                string replacement = random.Next(5) == 0 ? "" : Replacements[random.Next(Replacements.Length)];
                return Encoding.UTF8.GetBytes(text[..m.Index] + replacement + text[(m.Index + m.Length)..]);
        }
    }
}
