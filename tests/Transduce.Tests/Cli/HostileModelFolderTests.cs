using System.Text.Json.Nodes;
using Transduce.Checkpoints;
using Transduce.Tests.Import.Marian;

namespace Transduce.Tests.Cli;

/// <summary>
/// A model folder is untrusted input: <c>translate</c>, <c>convert</c> and <c>serve</c> given a hostile
/// <c>config.json</c> or weights file each end in one clear line naming the file (exit code 1), never an
/// out-of-memory kill or a stack trace.
/// </summary>
public sealed class HostileModelFolderTests : IDisposable
{
    private readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    private static string Marian => MarianFolders.Shipped;

    private string MarianCopy(Action<string> edit) => MarianFolders.CopyTo(Path.Combine(dir.Path, $"marian-{Guid.NewGuid():N}"), edit);

    /// <summary>Runs the three commands that load a model folder and checks each ends in one line naming <paramref name="file"/>.</summary>
    private void EachCommandRefuses(string folder, string file, string reason)
    {
        var runs = new (string Name, string[] Args)[]
        {
            ("translate", ["translate", "--model", folder, "Hello."]),
            ("convert", ["convert", "--from", "hf", folder, "--out", Path.Combine(dir.Path, $"out-{Guid.NewGuid():N}")]),
            ("serve", ["serve", "--model", folder, "--urls", "http://127.0.0.1:0"]),
        };
        foreach (var (name, args) in runs)
        {
            if (name == "convert" && !File.Exists(Path.Combine(folder, "vocab.json"))) continue; // convert reads Hugging Face folders, not native checkpoints
            var r = CliTests.Run(null, args);
            Assert.True(r.Code == 1, $"{name}: exit {r.Code}\n{r.Out}\n{r.Err}");
            var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(lines.Length == 1, $"{name}: expected one line, got:\n{r.Err}");
            Assert.StartsWith("error: ", lines[0]);
            Assert.Contains(file, lines[0]);
            Assert.Contains(reason, lines[0]);
        }
    }

    [Fact]
    public void MarianConfigWithAGiganticWidth()
    {
        string folder = MarianCopy(f => MarianFolders.SetConfig(f, "d_model", 1_000_000_000));
        EachCommandRefuses(folder, Path.Combine(folder, "config.json"), "'d_model' 1000000000 is larger than any supported model");
    }

    [Fact]
    public void MarianConfigLargerThanItsWeights()
    {
        // Within the absolute bounds, but 8192 wide with 2,000 layers worth of weights the file does not have.
        string folder = MarianCopy(f =>
        {
            MarianFolders.SetConfig(f, "d_model", 8192);
            MarianFolders.SetConfig(f, "encoder_layers", 200);
        });
        EachCommandRefuses(folder, Path.Combine(folder, "config.json"), "does not belong to these weights");
    }

    [Fact]
    public void MarianPickleThatClaimsMoreThanItHolds()
    {
        // Only pytorch_model.bin, with its first storage's declared size multiplied: refused before anything is read.
        string folder = MarianCopy(f =>
        {
            File.Delete(Path.Combine(f, "model.safetensors"));
            string bin = Path.Combine(f, "pytorch_model.bin");
            using var zip = System.IO.Compression.ZipFile.Open(bin, System.IO.Compression.ZipArchiveMode.Update);
            var pkl = zip.Entries.Single(e => e.FullName.EndsWith("data.pkl", StringComparison.Ordinal));
            byte[] program;
            using (var s = pkl.Open())
            using (var m = new MemoryStream())
            {
                s.CopyTo(m);
                program = m.ToArray();
            }
            // final_logits_bias: ('storage', FloatStorage, '0', 'cpu', 1075) ends "M\x33\x04" (BININT2 1075): make it 0xFFFF.
            int at = IndexOf(program, [(byte)'M', 0x33, 0x04, (byte)'t']);
            Assert.True(at > 0);
            program[at + 1] = 0xFF;
            program[at + 2] = 0xFF;
            string name = pkl.FullName;
            pkl.Delete();
            using var w = zip.CreateEntry(name, System.IO.Compression.CompressionLevel.NoCompression).Open();
            w.Write(program);
        });
        EachCommandRefuses(folder, Path.Combine(folder, "pytorch_model.bin"), "declares 262140 bytes but its data holds 4300");
    }

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        return -1;
    }

    [Fact]
    public void OwnCheckpointWithAHostileSafetensorsHeader()
    {
        var (model, data, pipeline, config) = TinyModels.Trained(epochs: 1);
        string folder = Path.Combine(dir.Path, "ckpt");
        using (var checkpoint = new Checkpoint
        {
            Model = model, ModelConfig = config, TextConfig = pipeline.Config,
            SourceVocabulary = data.SourceVocabulary, TargetVocabulary = data.TargetVocabulary,
        })
            checkpoint.Save(folder);
        // Rewrite the header so that the first tensor claims 2^62 × 2^62 floats.
        string weights = Path.Combine(folder, Checkpoint.WeightsFile);
        byte[] bytes = File.ReadAllBytes(weights);
        long headerLength = BitConverter.ToInt64(bytes, 0);
        var header = JsonNode.Parse(bytes.AsSpan(8, (int)headerLength))!.AsObject();
        var first = header.First(kv => kv.Key != "__metadata__");
        first.Value!["shape"] = new JsonArray(4611686018427387904L, 4611686018427387904L);
        var json = System.Text.Encoding.UTF8.GetBytes(header.ToJsonString());
        using (var stream = File.Create(weights))
        {
            stream.Write(BitConverter.GetBytes((long)json.Length));
            stream.Write(json);
            stream.Write(bytes.AsSpan(8 + (int)headerLength));
        }
        EachCommandRefuses(folder, weights, "too large to address");
    }
}
