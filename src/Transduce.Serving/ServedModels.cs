using System.Text.RegularExpressions;
using Microsoft.Extensions.Hosting;

namespace Transduce.Serving;

/// <summary>A model to serve: the name requests use, its decoder and what <c>/v1/models</c> says about it.</summary>
public sealed partial record ServedModel
{
    /// <summary>Pairs <paramref name="backend"/> with its description (<see cref="ModelInfo.From"/>); the name is <paramref name="info"/>'s.</summary>
    public ServedModel(TranslatorBackend backend, ModelInfo info) : this((ITranslationBackend)backend, info) { }

    /// <summary>Pairs any decoder (the tests' fakes) with its description; the name is <paramref name="info"/>'s.</summary>
    internal ServedModel(ITranslationBackend backend, ModelInfo info)
    {
        if (!IsValidName(info.Name))
            throw new ArgumentException($"model name '{info.Name}': use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit");
        Backend = backend;
        Info = info;
    }

    /// <summary>The name requests use (<c>"model"</c>).</summary>
    public string Name => Info.Name;

    /// <summary>The decoder.</summary>
    internal ITranslationBackend Backend { get; }

    /// <summary>What <c>/v1/models</c> reports.</summary>
    public ModelInfo Info { get; }

    /// <summary>Whether <paramref name="name"/> can name a model: 1–64 of <c>[A-Za-z0-9._-]</c>, starting with a letter or digit.</summary>
    public static bool IsValidName(string name) => NamePattern().IsMatch(name);

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex NamePattern();
}

/// <summary>
/// The models a service serves, each with its own <see cref="BatchingQueue"/> (and decoder thread), all admitted
/// against one <see cref="CostBudget"/>. Starting the host starts every queue; stopping it stops them together and
/// returns once every decoder thread has ended.
/// </summary>
internal sealed class ServedModels : IHostedService, IDisposable
{
    private readonly Dictionary<string, Entry> byName = new(StringComparer.Ordinal);

    /// <summary>Creates a queue per model in <paramref name="models"/> (names must differ; the first is the default).</summary>
    public ServedModels(IReadOnlyList<ServedModel> models, ServeOptions options, ServingMetrics metrics, CostBudget budget)
    {
        if (models.Count == 0) throw new ArgumentException("no model to serve", nameof(models));
        var entries = new List<Entry>();
        foreach (var model in models)
        {
            if (byName.ContainsKey(model.Name)) throw new ArgumentException($"model name '{model.Name}' is given twice");
            var entry = new Entry(model, new BatchingQueue(model.Name, model.Backend, options, metrics, budget));
            byName.Add(model.Name, entry);
            entries.Add(entry);
        }
        Models = entries;
        Budget = budget;
        metrics.SetBudgetGauge(() => (budget.InFlight, budget.Limit));
    }

    /// <summary>The models in the order given; the first is the default.</summary>
    public IReadOnlyList<Entry> Models { get; }

    /// <summary>The model a request without <c>"model"</c> gets.</summary>
    public Entry Default => Models[0];

    /// <summary>The in-flight cost budget shared by every model.</summary>
    public CostBudget Budget { get; }

    /// <summary>True once any queue has begun to stop.</summary>
    public bool IsStopping => Models.Any(m => m.Queue.IsStopping);

    /// <summary>The model named <paramref name="name"/>, or the default for null.</summary>
    public bool TryGet(string? name, out Entry entry)
    {
        if (name is null)
        {
            entry = Default;
            return true;
        }
        return byName.TryGetValue(name, out entry!);
    }

    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var m in Models) m.Queue.Start();
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken) => Task.WhenAll(Models.Select(m => m.Queue.StopAsync(cancellationToken)));

    /// <summary>Ends every decoder thread (stopping running decodes within one step) and waits for them.</summary>
    public void Dispose()
    {
        foreach (var m in Models) m.Queue.Dispose();
    }

    /// <summary>One served model and its queue.</summary>
    /// <param name="Model">The model.</param>
    /// <param name="Queue">Its queue and decoder.</param>
    public sealed record Entry(ServedModel Model, BatchingQueue Queue);
}
