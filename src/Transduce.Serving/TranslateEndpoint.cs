using System.Diagnostics;
using System.Globalization;
using Microsoft.AspNetCore.Http;
using Transduce.Translation;
using Transduce.Inference;

namespace Transduce.Serving;

/// <summary>
/// <c>POST /v1/translate</c>: read and check the body, estimate its cost, admit it or say why not, wait for the
/// model's decoder, answer.
/// </summary>
internal static class TranslateEndpoint
{
    public static async Task<IResult> HandleAsync(HttpContext context, ServedModels registry, ServeOptions options, ServingMetrics metrics)
    {
        var log = RequestLogEntry.Of(context);
        IResult Fail(string reason, RequestProblem problem)
        {
            metrics.CountError(reason);
            log.Error = reason;
            return ServingApp.Problem(problem);
        }

        long started = Stopwatch.GetTimestamp();
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        deadline.CancelAfter(options.Timeout);
        try
        {
            var (request, problem) = await TranslateRequestReader.ReadAsync(context.Request, options, deadline.Token);
            if (problem is not null)
                return Fail(problem.Status == StatusCodes.Status413PayloadTooLarge ? "too_large" : "invalid", problem);
            if (!registry.TryGet(request!.Model, out var entry))
                return Fail("unknown_model", new RequestProblem(StatusCodes.Status404NotFound, "Unknown model",
                    $"no model is named '{request.Model}'; this service has {string.Join(", ", registry.Models.Select(m => $"'{m.Model.Name}'"))} (see /v1/models)", "model"));
            var model = entry.Model;
            int beam = request.Beam ?? Math.Min(model.Info.DefaultBeam ?? options.DefaultBeam, options.MaxBeam);
            log.Model = model.Name;
            log.Sentences = request.Text.Count;
            log.Beam = beam;
            log.NBest = request.NBest;
            if (options.LogText) log.Text = request.Text;
            if (request.Attention && !model.Info.Attention)
                return Fail("invalid", new RequestProblem(StatusCodes.Status400BadRequest, "No attention",
                    $"the '{model.Info.Architecture}' model has no cross-attention to show; send \"attention\": false or leave it out", "attention"));

            if (LanguageProblem(request, model.Info) is { } languageProblem) return Fail("invalid", languageProblem);
            if (request.Task is { } task && !(model.Info.Tasks?.Contains(task) ?? false))
                return Fail("invalid", new RequestProblem(StatusCodes.Status400BadRequest, "Unknown task",
                    model.Info.Tasks is { Count: > 0 } tasks
                        ? $"'task': the model '{model.Name}' has no task '{task}'; its tasks are {string.Join(", ", tasks.Select(t => $"'{t}'"))}"
                        : $"'task': the model '{model.Name}' has no tasks; leave 'task' out", "task"));
            var decoding = options.Decoding(beam, request.NBest) with
            {
                SourceLanguage = request.SourceLang, TargetLanguage = request.TargetLang, Task = request.Task,
            };
            var costs = model.Backend.EstimateCost(request.Text, decoding);
            var job = new TranslationJob(request.Text, costs, decoding, request.Attention);
            log.Cost = job.Cost;
            log.SourceTokens = costs.Sum(c => (long)c.SourceTokens);
            if (TooCostly(request with { Beam = beam }, job, options) is { } tooCostly) return Fail("too_costly", tooCostly);

            var timeLeft = options.Timeout - Stopwatch.GetElapsedTime(started);
            switch (entry.Queue.TrySubmit(job, timeLeft, deadline.Token, out var pending, out var expected))
            {
                case SubmitRejection.TooLate:
                {
                    // Work it could not finish in time would only delay the requests that can: refuse it now.
                    double over = expected.TotalSeconds - timeLeft.TotalSeconds * BatchingQueue.DeadlineShare;
                    int later = (int)Math.Clamp(Math.Ceiling(over), 1, 60);
                    context.Response.Headers.RetryAfter = later.ToString(CultureInfo.InvariantCulture);
                    return Fail("too_late", new RequestProblem(StatusCodes.Status503ServiceUnavailable, "Cannot finish in time",
                        $"with the work already admitted for model '{model.Name}', this request would take about {expected.TotalSeconds:0.#} s at the decoder's current pace, " +
                        $"more than its time limit of {options.Timeout.TotalSeconds:0.###} s allows; retry in {later} s or send less",
                        null, "timeout_s", (long)Math.Ceiling(options.Timeout.TotalSeconds), (long)Math.Ceiling(expected.TotalSeconds)));
                }
                case SubmitRejection.QueueFull:
                    context.Response.Headers.RetryAfter = options.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
                    return Fail("queue_full", new RequestProblem(StatusCodes.Status503ServiceUnavailable, "Queue full",
                        $"the queue of model '{model.Name}' holds its limit of {options.QueueLimit} sentences; retry later", null,
                        "queue_limit", options.QueueLimit, request.Text.Count));
                case SubmitRejection.Busy:
                    int retry = registry.Budget.RetryAfterSeconds(job.Cost);
                    context.Response.Headers.RetryAfter = retry.ToString(CultureInfo.InvariantCulture);
                    return Fail("busy", new RequestProblem(StatusCodes.Status503ServiceUnavailable, "Busy",
                        $"the requests being translated already hold most of the in-flight budget of {options.MaxInflightCost}; this one needs {job.Cost}; retry in {retry} s",
                        null, "max_inflight_cost", options.MaxInflightCost, job.Cost));
                case SubmitRejection.ShuttingDown:
                    return Fail("shutting_down", Stopping());
            }

            IReadOnlyList<SentenceTranslation> outputs;
            try
            {
                outputs = await pending.WaitAsync(deadline.Token);
            }
            catch (ServiceStoppingException)
            {
                return Fail("shutting_down", Stopping());
            }
            var results = outputs.Select(ToResult).ToArray();
            log.TargetTokens = outputs.Sum(o => (long)o.TargetTokens);
            if (options.LogText) log.Translations = results.Select(r => r.Text).ToArray();
            return Results.Json(new TranslateResponse(model.Name, results), ServingApp.Json);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            metrics.CountError("client_gone");
            log.Error = "client_gone";
            return Results.Empty;
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            return Fail("timeout", new RequestProblem(StatusCodes.Status504GatewayTimeout, "Timed out",
                $"the translation took longer than {options.Timeout.TotalSeconds:0.###} s", null));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            metrics.CountError("internal");
            log.Error = "internal";
            throw;   // the exception handler answers 500 with a problem body (no details leak to the client)
        }
    }

    /// <summary>
    /// Null when the request fits the per-request limits; otherwise 413 (too much text even for greedy search: send
    /// less) or 422 (the search settings make it too costly: a smaller beam or n-best, or no attention, would fit).
    /// </summary>
    /// <summary>A language the model does not have (or any language for a model without), or a missing one it needs; else null.</summary>
    private static RequestProblem? LanguageProblem(TranslateRequest request, ModelInfo info)
    {
        foreach (var (field, code, fallback) in new[] { ("source_lang", request.SourceLang, info.DefaultSourceLang), ("target_lang", request.TargetLang, info.DefaultTargetLang) })
        {
            if (info.Languages is not { } known)
            {
                if (code is not null)
                    return new RequestProblem(StatusCodes.Status400BadRequest, "No languages",
                        $"the model has no languages to choose; leave '{field}' out", field);
                continue;
            }
            if (code is null && fallback is null)
                return new RequestProblem(StatusCodes.Status400BadRequest, "Language required",
                    $"the model is multilingual: '{field}' is required (one of its languages in /v1/models)", field);
            if (code is not null && !known.Contains(code))
                return new RequestProblem(StatusCodes.Status400BadRequest, "Unknown language", $"'{field}': {Text.LanguageCodes.Unknown(code, known)}", field);
        }
        return null;
    }

    private static RequestProblem? TooCostly(TranslateRequest request, TranslationJob job, ServeOptions options)
    {
        if (job.Cost > options.MaxRequestCost)
        {
            long perRow = job.Costs.Sum(c => c.Cost / Math.Max(1, c.Rows));   // the same sentences with one hypothesis each
            if (perRow > options.MaxRequestCost)
                return new RequestProblem(StatusCodes.Status413PayloadTooLarge, "Request too costly",
                    $"the request's estimated cost is {job.Cost} (hypotheses × (source positions + output limit + 1), summed over its {request.Text.Count} sentences); " +
                    $"the limit is {options.MaxRequestCost}, which even greedy decoding of this text would exceed ({perRow}): send fewer or shorter sentences",
                    "text", "max_request_cost", options.MaxRequestCost, job.Cost);
            long rows = Math.Max(1, options.MaxRequestCost / Math.Max(1, perRow));
            int beam = request.Beam ?? 1;
            string field = request.NBest > beam ? "n_best" : "beam";
            return new RequestProblem(StatusCodes.Status422UnprocessableEntity, "Search too costly",
                $"the request's estimated cost is {job.Cost} with {Math.Max(beam, request.NBest)} hypotheses per sentence; the limit is {options.MaxRequestCost}: " +
                $"ask for at most {rows} (beam and n_best), or send fewer sentences",
                field, "max_request_cost", options.MaxRequestCost, job.Cost);
        }
        if (request.Attention)
        {
            long cells = job.Costs.Sum(c => (long)(c.MaxOutputTokens + 1) * c.SourcePositions);
            if (cells > options.MaxAttentionCells)
                return new RequestProblem(StatusCodes.Status422UnprocessableEntity, "Attention too large",
                    $"the attention maps of this request may hold {cells} weights; the limit is {options.MaxAttentionCells}: ask for attention with fewer or shorter sentences",
                    "attention", "max_attention_cells", options.MaxAttentionCells, cells);
        }
        return null;
    }

    private static RequestProblem Stopping() =>
        new(StatusCodes.Status503ServiceUnavailable, "Shutting down", "the service is stopping and takes no new requests", null);

    private static TranslationResult ToResult(SentenceTranslation sentence)
    {
        var list = sentence.NBest.Select(h => new TranslationCandidate(h.Text, Finite(h.Score))).ToArray();
        var attention = sentence.Attention is { } map ? View(map) : null;
        return list.Length == 0 ? new TranslationResult("", null, list, attention) : new TranslationResult(list[0].Text, list[0].Score, list, attention);
    }

    /// <summary>The decoder's last layer, averaged over heads, rounded to 4 decimals.</summary>
    private static AttentionView View(AttentionMap map)
    {
        var mean = map.Select();
        var rows = Enumerable.Range(0, mean.GetLength(0))
            .Select(r => Enumerable.Range(0, mean.GetLength(1)).Select(c => MathF.Round(mean[r, c], 4)).ToArray()).ToArray();
        return new AttentionView(map.SourceTokens, map.TargetTokens, rows);
    }

    private static double? Finite(double d) => double.IsFinite(d) ? d : null;
}
