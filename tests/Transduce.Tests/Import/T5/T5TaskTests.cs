using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.Checkpoints;
using Transduce.Inference;
using Transduce.Translation;

namespace Transduce.Tests.Import.T5;

/// <summary>
/// A T5 folder's <c>task_specific_params</c> as tasks (<see cref="TranslationOptions.Task"/>, <c>--task</c>): the prefix
/// and the decoding settings a transformers pipeline built for the task applies, kept through a save, and hostile
/// entries refused with one line naming <c>config.json</c> and the field.
/// </summary>
public sealed class T5TaskTests
{
    private const string Summarize = "summarize: ";

    /// <summary>t5-tiny with three tasks: t5-base's summarization entry (shorter limits), the fixture's translation, and one without a prefix.</summary>
    private static string Folder(TempDir temp, Action<JsonObject>? edit = null)
    {
        string folder = T5ConvertTests.Assemble("t5-tiny", temp);
        string path = Path.Combine(folder, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        config["task_specific_params"] = new JsonObject
        {
            ["summarization"] = new JsonObject
            {
                ["early_stopping"] = true, ["length_penalty"] = 2.0, ["max_length"] = 12, ["min_length"] = 5,
                ["no_repeat_ngram_size"] = 3, ["num_beams"] = 4, ["prefix"] = Summarize,
                ["do_sample"] = false, ["not_a_generation_key"] = "ignored as transformers ignores it",
            },
            ["translation_en_to_de"] = JsonNode.Parse(config["task_specific_params"]!["translation_en_to_de"]!.ToJsonString()),
            ["plain"] = new JsonObject { ["num_beams"] = 2 },
        };
        edit?.Invoke(config);
        File.WriteAllText(path, config.ToJsonString());
        return folder;
    }

    private static string[] Sentences() =>
        [.. T5ParityTests.Expected("t5-tiny").GetProperty("sentences").EnumerateArray().Select(s => s.GetString()!).Where(s => s.Length > 0)];

    private static string Json(GenerationSettings settings) => JsonSerializer.Serialize(settings);

    [Fact]
    public void TheTasksAreReadAsAPipelineAppliesThem()
    {
        using var temp = new TempDir();
        using var translator = new Translator(Checkpoint.Load(Folder(temp)));
        Assert.Equal(["summarization", "translation_en_to_de", "plain"], translator.Tasks);
        var model = translator.Checkpoint.Generation;
        var tasks = translator.Checkpoint.Tasks;
        // The entry's keys over the folder's settings: max_length 12 → 11 new tokens with </s>; min_length 5 → 4 before it.
        Assert.Equal(Json(model with
        {
            NumBeams = 4, LengthPenalty = 2.0, EarlyStopping = EarlyStopping.WhenFull, MaxNewTokens = 11, MinLength = 4, NoRepeatNgramSize = 3,
        }), Json(tasks["summarization"].Generation));
        Assert.Equal(Summarize, tasks["summarization"].Prefix);
        Assert.Equal(Json(model with { NumBeams = 4, EarlyStopping = EarlyStopping.WhenFull, MaxNewTokens = 299 }), Json(tasks["translation_en_to_de"].Generation));
        Assert.Equal(("", Json(model with { NumBeams = 2 })), (tasks["plain"].Prefix, Json(tasks["plain"].Generation)));

        Assert.Equal(translator.Tasks, Transduce.Serving.ModelInfo.From(translator.Checkpoint, temp.Path).Tasks); // /v1/models lists them
        var options = translator.TaskOptions("summarization");
        Assert.Equal(("summarization", 4, (int?)11), (options.Task, options.Beam, options.MaxNewTokens));
        // T5 has no forced_eos_token_id: generate may output all 11 new tokens, none of them </s>.
        Assert.Equal(11, translator.MaxOutputLength(3, new TranslationOptions { Task = "summarization" }));
    }

    [Fact]
    public void ATaskPutsItsPrefixBeforeTheSourceUnlessAPrefixIsGiven()
    {
        using var temp = new TempDir();
        using var translator = new Translator(Checkpoint.Load(Folder(temp)));
        var pipeline = translator.Checkpoint.CreateTextPipeline();
        foreach (string sentence in Sentences())
        {
            Assert.Equal(pipeline.EncodeSource(Summarize + sentence), translator.EncodeSource(sentence, new TranslationOptions { Task = "summarization" }));
            Assert.Equal(pipeline.EncodeSource("question: " + sentence),
                translator.EncodeSource(sentence, new TranslationOptions { Task = "summarization", Prefix = "question: " }));
            Assert.Equal(pipeline.EncodeSource(sentence), translator.EncodeSource(sentence, new TranslationOptions { Task = "plain" }));
        }
    }

    [Fact]
    public void ATaskDecodesWithItsSettings()
    {
        using var temp = new TempDir();
        var checkpoint = Checkpoint.Load(Folder(temp));
        using var translator = new Translator(checkpoint);
        var sentences = Sentences();
        var byTask = translator.TranslateIds(sentences, translator.TaskOptions("summarization"));
        // The same decoding by hand: the task's settings as the model's own, the prefix written out, beam 4.
        using (var explicitly = new Translator(checkpoint.WithGeneration(checkpoint.Tasks["summarization"].Generation), ownsCheckpoint: false))
        {
            var prefixed = sentences.Select(s => Summarize + s).ToList();
            Assert.Equal(byTask, explicitly.TranslateIds(prefixed, new TranslationOptions { Beam = 4 }));
            // and the task's num_beams matters: greedy with its other settings gives other outputs.
            Assert.NotEqual(byTask, explicitly.TranslateIds(prefixed, new TranslationOptions { Beam = 1 }));
        }
        foreach (var ids in byTask)
        {
            Assert.InRange(ids.Length, 4, 11); // min_length 5 counts the decoder start and </s>, max_length 12 the start only
            var trigrams = Enumerable.Range(0, Math.Max(0, ids.Length - 2)).Select(i => (ids[i], ids[i + 1], ids[i + 2])).ToList();
            Assert.Equal(trigrams.Count, trigrams.Distinct().Count()); // no_repeat_ngram_size 3
        }
        // Options set explicitly win over the task's.
        var longer = translator.TranslateIds(sentences, translator.TaskOptions("summarization") with { MaxNewTokens = 16, MinLength = 0, NoRepeatNgramSize = 0 });
        Assert.Contains(longer, ids => ids.Length > 11 || ids.Length < 4);
    }

    [Fact]
    public void AnUnknownTaskNamesTheKnownOnes()
    {
        using var temp = new TempDir();
        using var translator = new Translator(Checkpoint.Load(Folder(temp)));
        var e = Assert.Throws<ArgumentException>(() => translator.Translate(["x"], new TranslationOptions { Task = "summarize" }));
        Assert.Contains("unknown task 'summarize'", e.Message);
        Assert.Contains("'summarization', 'translation_en_to_de', 'plain'", e.Message);
        Assert.Throws<ArgumentException>(() => translator.TaskOptions("nope"));

        using var temp2 = new TempDir();
        using var none = new Translator(Checkpoint.Load(Folder(temp2, c => c.Remove("task_specific_params"))));
        Assert.Empty(none.Tasks);
        Assert.Contains("this model has no tasks", Assert.Throws<ArgumentException>(() => none.Translate(["x"], new TranslationOptions { Task = "summarization" })).Message);
    }

    [Fact]
    public void TheTasksAreSavedWithTheCheckpointAndOlderCheckpointsLoadWithout()
    {
        using var temp = new TempDir();
        using var saved = new TempDir();
        string converted = Path.Combine(saved.Path, "converted");
        using (var checkpoint = Checkpoint.Load(Folder(temp))) checkpoint.Save(converted);
        using (var loaded = Checkpoint.Load(converted))
        using (var original = Checkpoint.Load(temp.Path))
        {
            Assert.Equal(original.Tasks.Keys, loaded.Tasks.Keys);
            foreach (var (name, task) in original.Tasks)
                Assert.Equal((task.Prefix, Json(task.Generation)), (loaded.Tasks[name].Prefix, Json(loaded.Tasks[name].Generation)));
            // convert --compute-type keeps them too.
            Assert.Equal(original.Tasks.Keys, original.WithComputeType(Transduce.Models.ComputeType.Int8).Tasks.Keys);
        }
        string configPath = Path.Combine(converted, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        Assert.NotNull(config["tasks"]);
        config.Remove("tasks");
        File.WriteAllText(configPath, config.ToJsonString());
        using var older = Checkpoint.Load(converted);
        Assert.Empty(older.Tasks);
    }

    public static TheoryData<string, string> Hostile => new()
    {
        { """["summarization"]""", "'task_specific_params' must be an object" },
        { """{"summarization": "summarize: "}""", "task_specific_params 'summarization' must be an object" },
        { """{"summarization": {"prefix": 3}}""", "task_specific_params 'summarization': 'prefix' must be a string" },
        { "{\"summarization\": {\"prefix\": \"" + new string('x', 5000) + "\"}}", "task_specific_params 'summarization': 'prefix' is longer than 4096" },
        { """{"summarization": {"num_beams": "four"}}""", "task_specific_params 'summarization': 'num_beams' must be an integer" },
        { """{"summarization": {"num_beams": 0}}""", "task_specific_params 'summarization': 'num_beams' must be between 1 and 256 (got 0)" },
        { """{"summarization": {"num_beams": 100000}}""", "task_specific_params 'summarization': 'num_beams' must be between 1 and 256 (got 100000)" },
        { """{"summarization": {"max_length": 10000000}}""", "task_specific_params 'summarization': 'max_length' 10000000 is larger" },
        { """{"summarization": {"min_length": 50, "max_length": 10}}""", "task_specific_params 'summarization': 'min_length' asks for more tokens" },
        { """{"summarization": {"early_stopping": "sometimes"}}""", "task_specific_params 'summarization': 'early_stopping' must be true, false or \"never\"" },
        { """{"summarization": {"length_penalty": "long"}}""", "task_specific_params 'summarization': 'length_penalty' must be a number" },
        { """{"summarization": {"bad_words_ids": [[99999]]}}""", "task_specific_params 'summarization': 'bad_words_ids': id 99999 is outside the vocabulary" },
        { """{"summarization": {"eos_token_id": 5}}""", "task_specific_params 'summarization': 'eos_token_id' differs from the model's" },
        { """{"": {"num_beams": 2}}""", "'task_specific_params': a task name must not be empty" },
        { "{" + string.Join(", ", Enumerable.Range(0, 65).Select(i => $"\"t{i}\": {{}}")) + "}", "'task_specific_params' has 65 tasks, more than the 64" },
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public void AHostileEntryIsOneLineNamingConfigJsonAndTheField(string tasks, string expected)
    {
        using var temp = new TempDir();
        string folder = Folder(temp, c => c["task_specific_params"] = JsonNode.Parse(tasks));
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(folder).Dispose());
        Assert.Contains(Path.Combine(folder, "config.json") + ": " + expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void TheCommandLineTakesATask()
    {
        using var temp = new TempDir();
        string folder = Folder(temp);
        var sentences = Sentences().Take(3).ToArray();
        IReadOnlyList<string> expected;
        using (var translator = Translator.Load(folder)) expected = translator.Translate(sentences, translator.TaskOptions("summarization"));
        var run = Cli.CliTests.Run(null, ["translate", "--model", folder, "--task", "summarization", .. sentences]);
        Assert.True(run.Code == 0, run.Err);
        Assert.Equal(expected, run.Out.Split('\n')[..sentences.Length]);

        var unknown = Cli.CliTests.Run(null, ["translate", "--model", folder, "--task", "summarise", "x"]);
        Assert.NotEqual(0, unknown.Code);
        Assert.Contains("unknown task 'summarise'", unknown.Err);
        Assert.Single(unknown.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public async Task TheServiceTakesATaskPerRequestAndNamesTheModelsTasksWhenUnknown()
    {
        using var temp = new TempDir();
        string folder = Folder(temp);
        using var backend = new Transduce.Serving.TranslatorBackend(new Translator(Checkpoint.Load(folder)));
        var info = Transduce.Serving.ModelInfo.From(backend.Translator.Checkpoint, folder, "t5");
        var options = new Transduce.Serving.ServeOptions();
        await using var service = await Tests.Serving.TestService.StartAsync(options, backend, info);
        var sentences = Sentences();

        var response = await service.TranslateAsync(new { text = sentences, task = "summarization" });
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        var body = await Tests.Serving.TestService.JsonAsync(response);
        // The task's prefix and settings, under the service's own limits and the request's (default) beam.
        var expected = backend.Translator.Translate(sentences, options.Decoding(1, 1) with { Task = "summarization" });
        Assert.Equal(expected, body["translations"]!.AsArray().Select(t => (string?)t!["text"]));
        var plain = backend.Translator.Translate(sentences, options.Decoding(1, 1));
        Assert.NotEqual(plain, expected);

        var unknown = await service.TranslateAsync(new { text = sentences, task = "summarize" });
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, unknown.StatusCode);
        var problem = await Tests.Serving.TestService.JsonAsync(unknown);
        Assert.Equal("task", (string?)problem["field"]);
        Assert.Contains("'summarization', 'translation_en_to_de', 'plain'", (string?)problem["detail"]);
    }
}
