using Transduce.Training;

namespace Transduce.Tests.Training;

/// <summary>The run configuration: presets, YAML and JSON round trips, layering, and errors that name the key and the file.</summary>
public sealed class RunConfigTests
{
    [Fact]
    public void EveryPresetRoundTripsThroughYamlAndJson()
    {
        Assert.Equal(["d2l-gru", "d2l-bahdanau", "d2l-transformer", "transformer-base-cpu"], RunConfig.PresetNames);
        foreach (string name in RunConfig.PresetNames)
        {
            var preset = RunConfig.FromPreset(name);
            preset.Validate();
            Assert.Equal(name, preset.Preset);
            Assert.Equal(preset, RunConfig.Parse(preset.ToYaml(), "dumped.yaml"));
            Assert.Equal(preset.ToYaml(), RunConfig.Parse(preset.ToYaml()).ToYaml());
            Assert.Equal(preset, RunConfig.Parse(preset.ToJson(), "dumped.json"));
        }
    }

    [Fact]
    public void PresetsKeepTheBooksAndTheBaseCpuSettings()
    {
        var gru = RunConfig.FromPreset("d2l-gru");
        Assert.Equal(("gru", 256, 256, 2, 0.2), (gru.Model.Architecture, gru.Model.EmbeddingSize, gru.Model.HiddenSize, gru.Model.Layers, gru.Model.Dropout));
        Assert.Equal((30, 128, 0.005, 1.0, 1), (gru.Training.Epochs, gru.Training.BatchSize, gru.Training.LearningRate, gru.Training.GradientClip, gru.Training.Seed));
        Assert.Equal((9, 2, NormalizerKind.D2l), (gru.Text.MaxSteps, gru.Text.MinFrequency, gru.Text.EffectiveNormalizer));
        Assert.Equal((512, 640), (gru.Data.MaxPairs!.Value, gru.Data.VocabularyPairs!.Value));
        Assert.Equal(4, gru.Examples.Count);

        // The other book presets build on d2l-gru's data and examples.
        var transformer = RunConfig.FromPreset("d2l-transformer");
        Assert.Equal(("transformer", 4, 64, 0.001), (transformer.Model.Architecture, transformer.Model.Heads, transformer.Model.FfnSize, transformer.Training.LearningRate));
        Assert.Equal(gru.Data, transformer.Data);
        Assert.Equal(gru.Examples, transformer.Examples);
        Assert.Equal("bahdanau", RunConfig.FromPreset("d2l-bahdanau").Model.Architecture);

        var baseCpu = RunConfig.FromPreset("transformer-base-cpu");
        Assert.Equal(TimeSpan.FromMinutes(60), baseCpu.Training.TimeLimit);
        Assert.Equal((LearningRateSchedule.InverseSqrt, 400, 0.1, 2048), (baseCpu.Training.Schedule, baseCpu.Training.WarmupSteps, baseCpu.Training.LabelSmoothing, baseCpu.Training.MaxTokens!.Value));
        Assert.Equal((TokenizerKind.Bpe, NormalizerKind.None, 8000), (baseCpu.Text.Tokenizer, baseCpu.Text.EffectiveNormalizer, baseCpu.Text.BpeVocabSize));
        Assert.True(baseCpu.Model.PreNorm && baseCpu.Model.TieEmbeddings && baseCpu.Model.ShareEmbeddings);
        // Stage 1b of the search (BENCHMARKS.md, issue 27): half the old batch and half the old dropout.
        Assert.Equal((0.05, 2048), (baseCpu.Model.Dropout, baseCpu.Training.MaxTokens!.Value));
        Assert.Equal(("train.tsv", "valid.tsv", null, 0.1), (baseCpu.Data.TrainFile, baseCpu.Data.ValidFile, baseCpu.Validation.Every, baseCpu.Validation.EveryFraction!.Value));
        // The precision's names are its JSON names (auto, bfloat16), in a preset as in train.json.
        Assert.Equal(TrainingPrecision.Auto, baseCpu.Training.Precision);
        Assert.Contains("precision: auto", baseCpu.ToYaml());
        Assert.Equal(baseCpu, RunConfig.Parse(baseCpu.ToJson()));
    }

    [Fact]
    public void AFileOverridesItsBaseKeyByKeyAndMayNameAPreset()
    {
        var config = RunConfig.Parse("""
            preset: transformer-base-cpu
            model:
              hidden_size: 128   # a comment
            training:
              time_limit: 90s
              schedule: constant
            """, "run.yaml");
        Assert.Equal("transformer-base-cpu", config.Preset);
        Assert.Equal(128, config.Model.HiddenSize);
        Assert.Equal(3, config.Model.Layers);                      // from the preset
        Assert.Equal(TimeSpan.FromSeconds(90), config.Training.TimeLimit);
        Assert.Equal(LearningRateSchedule.Constant, config.Training.Schedule);

        var over = RunConfig.FromPreset("d2l-gru").With([new("training.epochs", 3), new("validation.metric", "loss"), new("data.max_pairs", null)]);
        Assert.Equal((3, ValidationMetric.Loss, (int?)null), (over.Training.Epochs, over.Validation.Metric, over.Data.MaxPairs));
        Assert.Equal(2, over.Text.MinFrequency);
    }

    [Fact]
    public void ATypoIsOneLineNamingTheKeyTheFileAndTheLine()
    {
        var e = Assert.Throws<InvalidDataException>(() => RunConfig.Parse("model:\n  architecture: gru\n  hiden_size: 512\n", "run.yaml"));
        Assert.StartsWith("run.yaml:3: unknown key 'model.hiden_size' (did you mean 'hidden_size'?", e.Message);
        Assert.DoesNotContain('\n', e.Message);

        e = Assert.Throws<InvalidDataException>(() => RunConfig.Parse("trainig:\n  epochs: 3\n", "run.yaml"));
        Assert.StartsWith("run.yaml:1: unknown key 'trainig'", e.Message);

        e = Assert.Throws<InvalidDataException>(() => RunConfig.Parse("training:\n  epochs: many\n", "run.yaml"));
        Assert.Equal("run.yaml:2: 'training.epochs' must be a whole number (got \"many\")", e.Message);

        e = Assert.Throws<InvalidDataException>(() => RunConfig.Parse("training:\n  schedule: cosine\n", "run.yaml"));
        Assert.Equal("run.yaml:2: 'training.schedule' must be one of: constant, inverse-sqrt (got \"cosine\")", e.Message);

        e = Assert.Throws<InvalidDataException>(() => RunConfig.Parse("examples:\n  - source: a\n    referenc: b\n", "run.yaml"));
        Assert.StartsWith("run.yaml:3: unknown key 'examples[0].referenc'", e.Message);

        e = Assert.Throws<InvalidDataException>(() => RunConfig.Parse("model: [1, 2\n", "broken.yaml"));
        Assert.StartsWith("broken.yaml:", e.Message);

        var a = Assert.Throws<ArgumentException>(() => new RunConfig().With([new("model.hidden", 3)], "flags"));
        Assert.StartsWith("flags: unknown key 'model.hidden'", a.Message);

        var bad = Assert.Throws<ArgumentException>(() => (new RunConfig() with { Model = new ModelOptions { Architecture = "transformer", HiddenSize = 30, Heads = 4 } }).Validate());
        Assert.Contains("model.hidden_size", bad.Message);
    }

    [Fact]
    public void JsonFilesAreReadToo()
    {
        string dir = Directory.CreateTempSubdirectory("transduce-config-").FullName;
        try
        {
            string path = Path.Combine(dir, "run.json");
            File.WriteAllText(path, """{ "model": { "architecture": "bahdanau", "layers": 1 }, "training": { "epochs": 4 } }""");
            var config = RunConfig.Load(path, RunConfig.FromPreset("d2l-gru"));
            Assert.Equal(("bahdanau", 1, 4, 512), (config.Model.Architecture, config.Model.Layers, config.Training.Epochs, config.Data.MaxPairs!.Value));

            File.WriteAllText(path, """{ "model": { "layer": 1 } }""");
            var e = Assert.Throws<InvalidDataException>(() => RunConfig.Load(path));
            Assert.StartsWith($"{path}: unknown key 'model.layer'", e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
