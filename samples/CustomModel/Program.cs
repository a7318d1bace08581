using CustomModel;
using Transduce.Checkpoints;
using Transduce.Data;
using Transduce.Inference;
using Transduce.Models;
using Transduce.Training;
using Transduce.Translation;

// A model of one's own (LuongModel.cs): add it to the registry once, before anything names it.
ModelRegistry.Register(LuongConfig.Registration);

SentencePair[] pairs =
[
    new("Go.", "Va !"), new("Hi.", "Salut !"), new("Run!", "Cours !"), new("Who?", "Qui ?"),
    new("Wow!", "Ça alors !"), new("Fire!", "Au feu !"), new("Help!", "À l'aide !"), new("Jump.", "Saute."),
    new("Stop!", "Ça suffit !"), new("Wait!", "Attends !"), new("I see.", "Je comprends."), new("I lost.", "J'ai perdu."),
];

// The run configuration names the architecture like a built-in one; its own settings go in Extra (model.extra in YAML).
var config = new RunConfig
{
    Model = new ModelOptions
    {
        Architecture = LuongConfig.Name, EmbeddingSize = 32, HiddenSize = 64, Layers = 1, Dropout = 0,
        Extra = new Dictionary<string, string> { ["score"] = "dot" },
    },
    Training = new TrainingOptions { Epochs = 30, BatchSize = 12, LearningRate = 0.02, Seed = 1, TimeLimit = TimeSpan.FromMinutes(2) },
};

string directory = args.Length > 0 ? args[0] : "luong-model";
using (var run = new TrainingRun(config, directory, pairs, overwrite: true))
{
    TrainingSummary summary = run.Run();
    Console.WriteLine($"trained {summary.Updates} updates in {summary.Elapsed.TotalSeconds:F1} s");
}

// config.json names the architecture; the registry gives back a LuongConfig and a LuongSeq2Seq with the saved weights.
using var translator = new Translator(Checkpoint.Load(directory));
Console.WriteLine($"loaded {translator.Checkpoint.ModelConfig.Architecture}: {translator.Checkpoint.Model.GetType().Name}");
string[] sources = [.. pairs.Select(p => p.Source)];
IReadOnlyList<string> beam = translator.Translate(sources, new TranslationOptions { Beam = 4 });
for (int i = 0; i < sources.Length; i++)
    Console.WriteLine($"{sources[i]}\t{beam[i]}");
