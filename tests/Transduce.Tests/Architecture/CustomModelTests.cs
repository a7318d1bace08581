using System.Text.Json.Nodes;
using CustomModel;
using Transduce.Translation;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Inference;
using Transduce.Models;
using Transduce.Serving;
using Transduce.Training;

namespace Transduce.Tests.Architecture;

/// <summary>
/// A model defined outside the library (samples/CustomModel's LuongModel.cs, compiled into this assembly) goes through
/// everything a built-in one does once registered: a run configuration names it, TrainingRun trains it on pairs in memory,
/// config.json brings back its own config type through the registry, and greedy and beam search decode it.
/// </summary>
public sealed class CustomModelTests : IDisposable
{
    private static readonly SentencePair[] Pairs =
    [
        new("Go.", "Va !"), new("Hi.", "Salut !"), new("Run!", "Cours !"), new("Who?", "Qui ?"),
        new("Wow!", "Ça alors !"), new("Fire!", "Au feu !"), new("Help!", "À l'aide !"), new("Jump.", "Saute."),
        new("Stop!", "Ça suffit !"), new("Wait!", "Attends !"), new("I see.", "Je comprends."), new("I lost.", "J'ai perdu."),
    ];

    // The word tokenizer's d2l normaliser lowercases and splits punctuation off: these are the pairs' targets as it outputs them.
    private static readonly string[] Expected =
    [
        "va !", "salut !", "cours !", "qui ?", "ça alors !", "au feu !", "à l'aide !", "saute .", "ça suffit !", "attends !",
        "je comprends .", "j'ai perdu .",
    ];

    private readonly TempDir dir = new();

    /// <summary>The registry is the process's: the architecture is added once, by whichever test comes first.</summary>
    private static readonly Lazy<ModelArchitecture> Registered = new(() =>
    {
        ModelRegistry.Register(LuongConfig.Registration);
        return LuongConfig.Registration;
    });

    /// <summary>Registers samples/CustomModel's <c>luong</c> architecture in this process unless done already.</summary>
    internal static void EnsureRegistered() => _ = Registered.Value;

    public CustomModelTests() => EnsureRegistered();

    public void Dispose() => dir.Dispose();

    private static RunConfig Config(string score = "general") => new()
    {
        Model = new ModelOptions
        {
            Architecture = LuongConfig.Name, EmbeddingSize = 16, HiddenSize = 32, Layers = 1, Dropout = 0,
            Extra = new Dictionary<string, string> { ["score"] = score },
        },
        Training = new TrainingOptions { Epochs = 30, BatchSize = 12, LearningRate = 0.02, Seed = 1 },
    };

    [Fact]
    public void ARegisteredModelTrainsSavesLoadsAndDecodesGreedyAndBeam()
    {
        string run = dir.File("luong");
        using (var training = new TrainingRun(Config(), run, Pairs, overwrite: true))
        {
            var summary = training.Run();
            Assert.Equal(30, summary.Updates);
        }

        // config.json names the architecture and keeps the model's own setting; train.json keeps model.extra.
        var model = JsonNode.Parse(File.ReadAllText(Path.Combine(run, Checkpoint.ConfigFile)))!["model"]!;
        Assert.Equal(("luong", "general", 32), (model["architecture"]!.GetValue<string>(), model["score"]!.GetValue<string>(), model["hidden_size"]!.GetValue<int>()));
        Assert.Equal("general", JsonNode.Parse(File.ReadAllText(Path.Combine(run, "train.json")))!["model"]!["extra"]!["score"]!.GetValue<string>());

        var checkpoint = Checkpoint.Load(run);
        var config = Assert.IsType<LuongConfig>(checkpoint.ModelConfig);
        Assert.Equal(("general", 32), (config.Score, config.HiddenSize));
        Assert.IsType<LuongSeq2Seq>(checkpoint.Model);
        Assert.True(checkpoint.Model.HasCrossAttention);

        using var translator = new Translator(checkpoint);
        string[] sources = [.. Pairs.Select(p => p.Source)];
        Assert.Equal(Expected, translator.Translate(sources));
        Assert.Equal(Expected, translator.Translate(sources, new TranslationOptions { Beam = 4 }));
        var nBest = translator.TranslateNBest(["I lost."], new TranslationOptions { Beam = 4, NBest = 2 })[0];
        Assert.Equal(2, nBest.Count);
        Assert.Equal("j'ai perdu .", nBest[0].Text);
        Assert.True(nBest[0].Score >= nBest[1].Score);

        // Attention maps come from the state's ICrossAttentionState: one layer, one head, target × source.
        var (text, attention) = translator.TranslateWithAttention("I lost.", new TranslationOptions { Beam = 4 });
        Assert.Equal("j'ai perdu .", text);
        Assert.NotNull(attention);

        // What the service says about it comes from the registration.
        var info = ModelInfo.From(checkpoint, run);
        Assert.Equal(("luong", LuongConfig.Registration.Description, true), (info.Architecture, info.Description, info.Attention));

        // The packed reduced-precision paths are the built-in models': asking for one is refused by name.
        var e = Assert.ThrowsAny<ArgumentException>(() => translator.Translate(["Go."], new TranslationOptions { ComputeType = ComputeType.BFloat16 }));
        Assert.Contains("decodes in float32 only", e.Message);

        // A checkpoint of an architecture this process has not registered (a program that forgot Register) says so.
        string configPath = Path.Combine(run, Checkpoint.ConfigFile);
        File.WriteAllText(configPath, File.ReadAllText(configPath).Replace("\"luong\"", "\"luong-unregistered\""));
        var unknown = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(run));
        Assert.Contains("unknown architecture 'luong-unregistered'", unknown.Message);
        Assert.Contains("ModelRegistry.Register", unknown.Message);
    }

    [Fact]
    public async Task TheSampleProgramLearnsItsPairs()
    {
        // samples/CustomModel as built beside these tests (same configuration), run as a user runs it.
        string configuration = Path.GetRelativePath(Path.Combine(TestPaths.RepoRoot, "tests", "Transduce.Tests"), AppContext.BaseDirectory);
        string program = Path.Combine(TestPaths.RepoRoot, "samples", "CustomModel", configuration, "CustomModel.dll");
        Assert.True(File.Exists(program), $"{program} is missing: the test project builds the sample first");
        var start = new System.Diagnostics.ProcessStartInfo("dotnet") { WorkingDirectory = dir.Path, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(program);
        start.ArgumentList.Add(dir.File("model"));
        using var process = System.Diagnostics.Process.Start(start)!;
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        using var kill = limit.Token.Register(() => process.Kill(entireProcessTree: true));
        var error = process.StandardError.ReadToEndAsync(limit.Token);
        string output = await process.StandardOutput.ReadToEndAsync(limit.Token);
        await process.WaitForExitAsync(limit.Token);
        Assert.True(process.ExitCode == 0, $"the sample failed ({process.ExitCode}): {await error}");
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"^trained \d+ updates in ", lines[0]);
        Assert.Equal("loaded luong: LuongSeq2Seq", lines[1]);
        Assert.Equal(Pairs.Zip(Expected, (p, e) => $"{p.Source}\t{e}"), lines[2..]);
    }

    [Fact]
    public void ADuplicateNameIsRefused()
    {
        var again = Assert.Throws<ArgumentException>(() => ModelRegistry.Register(LuongConfig.Registration));
        Assert.Contains("model architecture 'luong' is already registered", again.Message);
        var builtIn = ModelArchitecture.Of<LuongConfig>("transformer", "not the Transformer", c => new LuongSeq2Seq(c), _ => new LuongConfig());
        Assert.Contains("'transformer' is already registered", Assert.Throws<ArgumentException>(() => ModelRegistry.Register(builtIn)).Message);
        Assert.Equal(1, ModelRegistry.Names.Count(n => n == "luong"));
        Assert.Equal(1, ModelRegistry.Names.Count(n => n == "transformer"));
    }

    [Fact]
    public void RegistrationIsSafeFromSeveralThreads()
    {
        // Each name is claimed by exactly one of the threads racing for it.
        string[] names = [.. Enumerable.Range(0, 4).Select(i => $"luong-race-{Guid.NewGuid():N}-{i}")];
        int refused = 0;
        Parallel.For(0, 16, i =>
        {
            string name = names[i % names.Length];
            var architecture = ModelArchitecture.Of<LuongConfig>(name, "a racing copy", c => new LuongSeq2Seq(c), _ => new LuongConfig());
            try
            {
                ModelRegistry.Register(architecture);
            }
            catch (ArgumentException)
            {
                Interlocked.Increment(ref refused);
            }
        });
        Assert.Equal(12, refused);
        Assert.All(names, n => Assert.Equal(1, ModelRegistry.Names.Count(x => x == n)));
    }

    [Fact]
    public void TheRunConfigurationNamesTheArchitectureAndCarriesItsOwnKeys()
    {
        // From a file: model.extra, its values read as text (a number too).
        var config = RunConfig.Parse("model:\n  architecture: luong\n  hidden_size: 8\n  extra:\n    score: dot\n    width: 3\n", "run.yaml");
        config.Validate();
        Assert.Equal(new Dictionary<string, string> { ["score"] = "dot", ["width"] = "3" }, config.Model.Extra);
        var luong = Assert.IsType<LuongConfig>(ModelRegistry.Get("luong").Configure(config.Model.ToModelSettings(), 10, 12, 0));
        Assert.Equal(("dot", 8, 10, 12), (luong.Score, luong.HiddenSize, luong.SourceVocabSize, luong.TargetVocabSize));
        // By dotted key, as flags set keys; and back through YAML.
        var general = config.With([new("model.extra.score", "general")]);
        Assert.Equal("general", general.Model.Extra!["score"]);
        Assert.Equal(general, RunConfig.Parse(general.ToYaml(), "dump"));
        // A built-in configuration writes no extra key at all.
        Assert.DoesNotContain("extra", new RunConfig().ToYaml());

        var nested = Assert.ThrowsAny<Exception>(() => RunConfig.Parse("model:\n  extra:\n    score: [1, 2]\n", "run.yaml"));
        Assert.Contains("'model.extra.score' must be a number, a boolean or text", nested.Message);
        var builtIn = Assert.Throws<ArgumentException>(() => (new RunConfig() with { Model = new ModelOptions { Extra = new Dictionary<string, string> { ["score"] = "dot" } } }).Validate());
        Assert.Contains("'model.extra': the built-in architecture 'gru' takes no extra settings", builtIn.Message);
        var unknown = Assert.Throws<ArgumentException>(() => (new RunConfig() with { Model = new ModelOptions { Architecture = "nonesuch" } }).Validate());
        Assert.Contains("unknown 'nonesuch'", unknown.Message);
        Assert.Contains("luong", unknown.Message);
        // The model's own check of its setting.
        var badScore = ModelRegistry.Get("luong").Configure(config.Model.ToModelSettings() with { Extra = new Dictionary<string, string> { ["score"] = "cosine" } }, 10, 12, 0);
        Assert.Contains("'score' must be dot or general", Assert.Throws<ArgumentException>(() => ModelRegistry.Create(badScore)).Message);
    }
}
