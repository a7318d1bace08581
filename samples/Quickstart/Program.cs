using Transduce.Data;
using Transduce.Training;
using Transduce.Translation;

// A dozen English–French sentence pairs, in memory.
SentencePair[] pairs =
[
    new("Go.", "Va !"), new("Hi.", "Salut !"), new("Run!", "Cours !"), new("Who?", "Qui ?"),
    new("Wow!", "Ça alors !"), new("Fire!", "Au feu !"), new("Help!", "À l'aide !"), new("Jump.", "Saute."),
    new("Stop!", "Ça suffit !"), new("Wait!", "Attends !"), new("I see.", "Je comprends."), new("I lost.", "J'ai perdu."),
];

// A tiny Transformer: 300 updates, a few seconds on two cores (every key has a default; see RunConfig).
var config = new RunConfig
{
    Model = new ModelOptions { Architecture = "transformer", HiddenSize = 32, Layers = 1, Heads = 2, FfnSize = 64, Dropout = 0 },
    Training = new TrainingOptions { Epochs = 100, BatchSize = 4, LearningRate = 0.005, TimeLimit = TimeSpan.FromMinutes(2) },
};

// Train, saving the run in ./tiny-model (a checkpoint directory; Ctrl+C-safe and resumable with TrainingRun.Resume).
using (var run = new TrainingRun(config, "tiny-model", pairs, overwrite: true))
{
    run.EpochCompleted += (_, e) => { if (e.Epoch % 25 == 0) Console.WriteLine($"epoch {e.Epoch}: loss {e.Loss:F3}"); };
    TrainingSummary summary = run.Run();
    Console.WriteLine($"trained {summary.Updates} updates in {summary.Elapsed.TotalSeconds:F1} s");
}

// Load the saved model and translate.
using var translator = Translator.Load("tiny-model");
foreach (string translation in translator.Translate(["I lost.", "Help!", "Go."]))
    Console.WriteLine(translation);
