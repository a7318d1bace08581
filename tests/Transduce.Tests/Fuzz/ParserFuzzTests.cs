using System.IO.Compression;
using System.Text;
using Microsoft.AspNetCore.Http;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.IO;
using Transduce.Serving;
using Transduce.Tests.Import.M2M100;
using Transduce.Tests.Import.T5;
using Transduce.Text;
using Transduce.Training;
using Xunit.Abstractions;

namespace Transduce.Tests.Fuzz;

/// <summary>
/// One bounded fuzz target per parser that takes untrusted bytes (see <see cref="Fuzzer"/>): safetensors, the
/// <c>torch.save</c> zip and its pickle program, SentencePiece protobuf, the BPE model file, YAML/JSON run configs, corpus
/// lines, the service's request body and prepared token shards. Seeds are the repository's tiny fixtures (and <c>../shared/testdata</c> when
/// present) plus the issue's probes, small; the hostile inputs are generated here and never written outside a temp folder.
/// </summary>
public sealed class ParserFuzzTests(ITestOutputHelper output)
{
    private static string SharedTestdata(string name) => Path.GetFullPath(Path.Combine(TestPaths.RepoRoot, "..", "shared", "testdata", name));

    private static IEnumerable<byte[]> ReadExisting(params string[] paths) => paths.Where(File.Exists).Select(File.ReadAllBytes);

    private static readonly string[] JsonTokens =
        ["-1", "0", "1e300", "2147483648", "99999999999999999999", "0.5", "null", "true", "\"\"", "\"\\udc00\"", "[", "]", "{", "}", ",", ":", "\"", "\\", "[[[[[[[[[[[[", "{\"a\":"];

    [Fact]
    public void SafetensorsLoadsOrFailsWithOneLine()
    {
        using var temp = new TempDir();
        string file = temp.File("model.safetensors");
        var seeds = ReadExisting(Path.Combine(T5ParityTests.Folder("t5-tiny"), "model.safetensors"), Path.Combine(M2M100ParityTests.Folder, "model.safetensors"))
            .ToList();
        Fuzzer.Run(output, "safetensors", seeds, [.. JsonTokens, "\"F32\"", "\"I64\"", "\"data_offsets\"", "\"shape\"", "\"__metadata__\""], bytes =>
        {
            File.WriteAllBytes(file, bytes);
            var index = WeightFiles.Describe(file);
            // What the format requires of an accepted file: the byte ranges tile the data section exactly.
            var (entries, _, dataStart) = Safetensors.ReadHeader(file);
            long covered = 0;
            foreach (var e in entries.Values.OrderBy(e => e.Start))
            {
                Assert.Equal(covered, e.Start);
                covered = e.End;
            }
            Assert.Equal(bytes.Length - dataStart, covered);
            Assert.Equal(entries.Count, index.Shapes.Count);
            DisposeAll(WeightFiles.Load(file));
        }, probes: [Overlapping()]);
    }

    /// <summary>The issue's first probe, small: two tensors over the same bytes.</summary>
    private static byte[] Overlapping()
    {
        string header = """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""";
        byte[] h = Encoding.UTF8.GetBytes(header);
        return [.. BitConverter.GetBytes((ulong)h.Length), .. h, .. new byte[8]];
    }

    [Fact]
    public void TorchSaveZipLoadsOrFailsWithOneLine()
    {
        using var temp = new TempDir();
        string file = temp.File("pytorch_model.bin");
        var seeds = ReadExisting(Path.Combine(T5ParityTests.Folder("t5-tiny"), "pytorch_model.bin"), Path.Combine(M2M100ParityTests.Folder, "pytorch_model.bin")).ToList();
        Fuzzer.Run(output, "torch.save zip", seeds, ["PK\u0003\u0004", "PK\u0001\u0002", "PK\u0005\u0006", "data.pkl", "/data/0", "\uffff\uffff"], bytes =>
        {
            File.WriteAllBytes(file, bytes);
            WeightFiles.Describe(file);
            DisposeAll(WeightFiles.Load(file));
        });
    }

    [Fact]
    public void PickleProgramLoadsOrFailsWithOneLine()
    {
        // The pickle program (data.pkl) mutated inside an otherwise intact archive, so the edits reach the pickle machine
        // rather than the zip reader's checks.
        using var temp = new TempDir();
        string file = temp.File("pytorch_model.bin");
        using var carrier = ZipFile.OpenRead(Path.Combine(T5ParityTests.Folder("t5-tiny"), "pytorch_model.bin"));
        var entries = carrier.Entries.Select(e => (e.FullName, Bytes: ReadAll(e))).ToList();
        int pkl = entries.FindIndex(e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal));
        Assert.True(pkl >= 0);
        byte[][] seeds = [entries[pkl].Bytes];
        // Opcodes and fragments of the issue's pickle probes (long runs of '}', ']', '(') and of globals it must refuse.
        string[] tokens = ["}", "]", "(", ")", "t", "e", "s", "u", "a", "R", "b", "0", "2", "N", "\u0085", "\u0086", "q", "h", "J", "K", "M", "X",
            "c__builtin__\neval\n", "cos\nsystem\n", "ctorch._utils\n_rebuild_tensor_v2\n", "ctorch\nFloatStorage\n", "}}}}}}}}}}}}}}}}", "((((((((((((((((", "]]]]]]]]]]]]]]]]", "."];
        Fuzzer.Run(output, "pickle program", seeds, tokens, bytes =>
        {
            File.Delete(file);
            using (var zip = ZipFile.Open(file, ZipArchiveMode.Create))
            {
                for (int i = 0; i < entries.Count; i++)
                {
                    using var s = zip.CreateEntry(entries[i].FullName, CompressionLevel.NoCompression).Open();
                    s.Write(i == pkl ? bytes : entries[i].Bytes);
                }
            }
            WeightFiles.Describe(file);
            DisposeAll(WeightFiles.Load(file));
        }, probes: [.. "}](".Select(c => Enumerable.Repeat((byte)c, 1 << 20).ToArray())]);
    }

    private static byte[] ReadAll(ZipArchiveEntry entry)
    {
        using var s = entry.Open();
        using var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    }

    private static void DisposeAll(Dictionary<string, TorchSharp.torch.Tensor> tensors)
    {
        foreach (var t in tensors.Values) t.Dispose();
    }

    [Fact]
    public void SentencePieceModelLoadsOrFailsWithOneLine()
    {
        var seeds = ReadExisting(Path.Combine(T5ParityTests.Folder(""), "spiece.model"), Path.Combine(M2M100ParityTests.Folder, "sentencepiece.bpe.model"), SharedTestdata("marian-tiny/source.spm")).ToList();
        Fuzzer.Run(output, "sentencepiece", seeds, ["\u2581", "<unk>", "<s>", "</s>", "<0x41>", "\u0008", "\u0010", "\u0018", "\u0020", "\u0022", "\u002a", "\u0042"], bytes =>
        {
            var model = SentencePieceModel.FromBytes(bytes, "fuzz.model");
            // A model that loads must encode and decode without failing.
            int[] ids = model.EncodeIds("Hello wörld, 你好 👍🏽 <0x41>\u00a0!");
            model.DecodeIds(ids);
        });
    }

    [Fact]
    public void BpeModelFileLoadsOrFailsWithOneLine()
    {
        using var temp = new TempDir();
        string file = temp.File("bpe.json");
        string[] sentences = ["the cat sat on the mat", "le chat est sur le tapis", "the hat, the mat! 42 cats?", "naïve café 你好"];
        byte[][] seeds =
        [
            Encoding.UTF8.GetBytes(BpeTokenizer.Train(sentences, new BpeTrainingOptions { VocabSize = BpeTokenizer.FirstLearnedId + 30 }).ToJson()),
            Encoding.UTF8.GetBytes(BpeTokenizer.Train(sentences.Reverse(), new BpeTrainingOptions { VocabSize = BpeTokenizer.FirstLearnedId + 12 }).ToJson()),
        ];
        Fuzzer.Run(output, "bpe model", seeds, [.. JsonTokens, " ", "\"a b\"", "\"t he\"", "\"<0x41>\"", "\"whitespace\"", "\"vocab\"", "\"merges\""], bytes =>
        {
            File.WriteAllBytes(file, bytes);
            var tokenizer = BpeTokenizer.Load(file);
            tokenizer.EncodeToIds("the cat, naïve 你好 👍🏽");
        });
    }

    [Fact]
    public void RunConfigLoadsOrFailsWithOneLine()
    {
        using var temp = new TempDir();
        string yaml = temp.File("run.yaml"), json = temp.File("run.json");
        string presets = Path.Combine(TestPaths.RepoRoot, "src", "Transduce", "Training", "Presets");
        var seeds = Directory.GetFiles(presets, "*.yaml").Order().Select(File.ReadAllBytes)
            .Append(Encoding.UTF8.GetBytes("""{"preset": "d2l-gru", "model": {"hidden_size": 32}, "training": {"epochs": 2}}"""))
            .ToList();
        string[] tokens = ["&a ", "*a", "<<: *a", "!!binary ", "!!python/object ", "{", "}", "[", "]", "- ", ": ", ", ", "\n", "\n  ", "\t", "#",
            "1e300", "99999999999h", "1e300m", "-1", "0", "2147483648", "null", "~", "\"\\ud800\"", "time_limit: ", "preset: ", "'", "\"", "---\n", "...\n", "? "];
        Fuzzer.Run(output, "run config", seeds, tokens, bytes =>
        {
            File.WriteAllBytes(yaml, bytes);
            RunConfig.Load(yaml);
            File.WriteAllBytes(json, bytes);
            try
            {
                RunConfig.Load(json);
            }
            catch (Exception e) when (Fuzzer.IsUserError(e))
            {
                // The YAML reading above is the target; as JSON most of these are rejected, and must be so in one line.
                Fuzzer.AssertOneLineUserError(e, "run.json");
            }
        }, probes: [Encoding.UTF8.GetBytes("a: &a [*a]\n"), BillionLaughs(), Encoding.UTF8.GetBytes("training:\n  time_limit: 99999999999h\n"),
            Encoding.UTF8.GetBytes("training:\n  time_limit: 1e300m\n")]);
    }

    private static byte[] BillionLaughs()
    {
        var text = new StringBuilder("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for (int i = 1; i < 10; i++) text.Append($"a{i}: &a{i} [{string.Join(", ", Enumerable.Repeat($"*a{i - 1}", 10))}]\n");
        return Encoding.UTF8.GetBytes(text.ToString());
    }

    [Fact]
    public void TokenShardLoadsOrFailsWithOneLine()
    {
        // A prepared run's data/ comes from elsewhere (another machine, the PyTorch trainer): its shard is untrusted bytes,
        // read through the mapped pairs as training reads them.
        using var temp = new TempDir();
        string dir = temp.File("data");
        TokenShards.Write(dir, [new EncodedPair([3], [4]), new EncodedPair([5, 6], [7, 8, 9]), new EncodedPair([7, 7, 7], [5])], 20, 20);
        string shard = Path.Combine(dir, "shard-00000.safetensors");
        byte[][] seeds = [File.ReadAllBytes(shard)];
        Fuzzer.Run(output, "token shard", seeds, [.. JsonTokens, "\"I32\"", "\"I64\"", "\"source_offsets\"", "\"target_ids\""], bytes =>
        {
            File.WriteAllBytes(shard, bytes);
            using var pairs = ShardPairs.Open(dir);
            for (int i = 0; i < pairs.Count; i++)
            {
                var pair = pairs[i];
                Assert.All(pair.Source, id => Assert.InRange(id, 0, 19));
                Assert.All(pair.Target, id => Assert.InRange(id, 0, 19));
            }
        });
    }

    [Fact]
    public void CorpusLinesReadOrFailWithOneLine()
    {
        using var temp = new TempDir();
        string file = temp.File("train.tsv");
        byte[][] seeds =
        [
            Encoding.UTF8.GetBytes("Go.\tVa !\tCC-BY 2.0 (France)\nHi.\tSalut !\tCC-BY 2.0\r\nRun!\tCours\u00a0!\t#1\n"),
            Encoding.UTF8.GetBytes("I'm naïve.\tJe suis naïf.\nWho?\tQui ?\n你好\tBonjour\n"),
        ];
        Fuzzer.Run(output, "corpus", seeds, ["\t", "\n", "\r\n", "\r", "\0", " ", "\u00a0", "\ufeff", "\u2028", "\uffff", "é"], bytes =>
        {
            File.WriteAllBytes(file, bytes);
            try
            {
                ParallelCorpus.ReadTsv(file);
            }
            finally
            {
                // Skipping bad lines reads the same bytes without failing on any of them.
                var skipped = ParallelCorpus.ReadTsv(file, new CorpusReadOptions { SkipInvalid = true });
                Assert.All(skipped.Pairs, p => Assert.False(string.IsNullOrWhiteSpace(p.Source) || string.IsNullOrWhiteSpace(p.Target)));
            }
        });
    }

    [Fact]
    public void TranslateRequestBodyIsReadOrAnsweredWithOneLineProblem()
    {
        var options = new ServeOptions();
        byte[][] seeds =
        [
            Encoding.UTF8.GetBytes("""{"text": ["Hello world.", "Ça va ?"], "beam": 4, "n_best": 2, "attention": true}"""),
            Encoding.UTF8.GetBytes("""{"text": ["你好 👍🏽"], "model": "default", "source_lang": "eng_Latn", "target_lang": "fra_Latn"}"""),
        ];
        Fuzzer.Run(output, "request body", seeds, [.. JsonTokens, "\"text\"", "\"beam\"", "\"n_best\"", "1e30", "\"\\u0000\""], bytes =>
        {
            var context = new DefaultHttpContext();
            context.Request.ContentType = "application/json";
            context.Request.Body = new MemoryStream(bytes);
            context.Request.ContentLength = bytes.Length;
            var (request, problem) = TranslateRequestReader.ReadAsync(context.Request, options, CancellationToken.None).GetAwaiter().GetResult();
            if (problem is null)
            {
                Assert.NotNull(request);
                Assert.NotEmpty(request.Text);
                return;
            }
            Assert.Null(request);
            Assert.Contains(problem.Status, new[] { 400, 413, 422 });
            Assert.False(problem.Detail.Contains('\n') || problem.Detail.Contains('\r'), $"a problem detail of several lines: {problem.Detail}");
            throw new InvalidDataException(problem.Detail); // counted as rejected (a 4xx with one line)
        }, probes: [Encoding.UTF8.GetBytes(new string('[', 100_000)), Encoding.UTF8.GetBytes("""{"text": ["\udc00"]}"""), Encoding.UTF8.GetBytes("""{"text": ["a"], "beam": 1e30}""")]);
    }
}
