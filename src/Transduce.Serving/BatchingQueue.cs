using System.Diagnostics;
using System.Threading.Channels;
using Transduce.Translation;
using Transduce.Inference;

namespace Transduce.Serving;

/// <summary>Why <see cref="BatchingQueue.TrySubmit"/> refused a request.</summary>
internal enum SubmitRejection
{
    /// <summary>Accepted.</summary>
    None,

    /// <summary>Queueing the request would exceed <see cref="ServeOptions.QueueLimit"/> sentences.</summary>
    QueueFull,

    /// <summary>Admitting the request would exceed <see cref="ServeOptions.MaxInflightCost"/>.</summary>
    Busy,

    /// <summary>The service is shutting down and takes no new work.</summary>
    ShuttingDown,

    /// <summary>
    /// At the decoder's observed pace, with the work already admitted ahead of it, the request could not be answered
    /// within its time limit: refused up front rather than worked on and timed out.
    /// </summary>
    TooLate,
}

/// <summary>One request for the decoder: sentences, their estimated costs and how to decode them.</summary>
/// <param name="Sentences">Source sentences.</param>
/// <param name="Costs">Per sentence, <see cref="ITranslationBackend.EstimateCost"/> for <paramref name="Options"/>.</param>
/// <param name="Options">Beam, n-best, output limits.</param>
/// <param name="Attention">Whether the best translation's cross-attention is wanted.</param>
internal sealed record TranslationJob(IReadOnlyList<string> Sentences, IReadOnlyList<DecodingCost> Costs, TranslationOptions Options, bool Attention)
{
    /// <summary>The request's estimated cost: the sum over its sentences.</summary>
    public long Cost { get; } = Costs.Sum(c => c.Cost);
}

/// <summary>Thrown to requests still waiting when the service stops before it could decode them.</summary>
internal sealed class ServiceStoppingException() : Exception("the service stopped before the request was translated");

/// <summary>
/// The decoder of one model and the requests waiting for it. Requests are written to a channel; one dedicated worker
/// thread takes them, waiting up to <see cref="ServeOptions.BatchWindow"/> for more after the first (once requests have
/// been coming together), and decodes in
/// turns: each turn, the request at the head of the line decodes its next slice (at most
/// <see cref="ServeOptions.MaxBatch"/> sentences and <see cref="ServeOptions.MaxBatchCost"/>) together with the waiting
/// sentences of other requests with the same search settings and a similar cost, then goes to the back of the line;
/// after a slice of a large request the first small request waiting takes the next turn. A large request thus advances
/// a slice at a time while small ones keep being answered, each waiting for at most one slice.
/// <para>A decoder call stops within one decoding step once every request in it has been cancelled (client gone or
/// time out), or when the host's shutdown time is up. Stopping refuses new requests and finishes those admitted.</para>
/// </summary>
internal sealed partial class BatchingQueue : IDisposable
{
    private readonly ITranslationBackend backend;
    private readonly ServeOptions options;
    private readonly ServingMetrics metrics;
    private readonly CostBudget budget;
    private readonly Channel<WorkItem> channel = Channel.CreateUnbounded<WorkItem>(new UnboundedChannelOptions { SingleReader = true });
    private readonly TaskCompletionSource workerDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource abort = new();
    private readonly object admission = new();
    private readonly List<WorkItem> admitted = [];   // guarded by admission: every request admitted and not yet finished
    private readonly DrainRate drain = new();        // this model's decoder
    private Thread? worker;
    private long running;                            // estimated cost of the decoder call running now
    private long queued, decoding;
    private bool stopping;
    private bool lastTurnLarge;   // worker thread only
    private int lastTurnRequests; // worker thread only: requests in the last decoder call

    /// <summary>Creates the queue of model <paramref name="model"/>; the worker starts with <see cref="Start"/>.</summary>
    public BatchingQueue(string model, ITranslationBackend backend, ServeOptions options, ServingMetrics metrics, CostBudget budget)
    {
        Model = model;
        this.backend = backend;
        this.options = options;
        this.metrics = metrics;
        this.budget = budget;
        metrics.RegisterModel(model, () => Interlocked.Read(ref queued), () => Interlocked.Read(ref decoding));
    }

    /// <summary>The model's name.</summary>
    public string Model { get; }

    /// <summary>Sentences admitted and not yet handed to the decoder.</summary>
    public long QueuedSentences => Interlocked.Read(ref queued);

    /// <summary>Sentences in the decoder call running now (0 when the decoder is idle).</summary>
    public long DecodingSentences => Interlocked.Read(ref decoding);

    /// <summary>True once <see cref="StopAsync"/> has begun.</summary>
    public bool IsStopping
    {
        get { lock (admission) return stopping; }
    }

    /// <summary>
    /// The share of a request's remaining time its expected completion may take for it to be admitted: the rest is the
    /// margin for a pace that varies (other processes, longer outputs than the last calls had).
    /// </summary>
    public const double DeadlineShare = 0.75;

    /// <summary>This model's decoding pace, learnt from its decoder calls (and the warm-up).</summary>
    internal DrainRate Drain => drain;

    /// <summary>
    /// Queues <paramref name="job"/>, which must be answered within <paramref name="timeLeft"/>. On success
    /// <paramref name="result"/> completes with one translation per sentence, is cancelled if
    /// <paramref name="cancellation"/> fires first, or fails with <see cref="ServiceStoppingException"/> if the service
    /// had to stop first. The job's cost stays reserved in the budget until then. <paramref name="expected"/> is how long
    /// the request is expected to take from now (see <see cref="ExpectedTime"/>); with <see cref="SubmitRejection.TooLate"/>
    /// it is more than <see cref="DeadlineShare"/> of <paramref name="timeLeft"/>.
    /// </summary>
    public SubmitRejection TrySubmit(TranslationJob job, TimeSpan timeLeft, CancellationToken cancellation,
        out Task<IReadOnlyList<SentenceTranslation>> result, out TimeSpan expected)
    {
        var item = new WorkItem(job, cancellation);
        result = item.Completion.Task;
        expected = TimeSpan.Zero;
        lock (admission)
        {
            if (stopping) return SubmitRejection.ShuttingDown;
            if (queued + job.Sentences.Count > options.QueueLimit) return SubmitRejection.QueueFull;
            expected = ExpectedTime(job.Cost);
            if (expected > timeLeft * DeadlineShare) return SubmitRejection.TooLate;
            if (!budget.TryReserve(job.Cost)) return SubmitRejection.Busy;
            Interlocked.Add(ref queued, job.Sentences.Count);
            if (!channel.Writer.TryWrite(item))
            {
                Interlocked.Add(ref queued, -job.Sentences.Count);
                budget.Release(job.Cost);
                return SubmitRejection.ShuttingDown;
            }
            admitted.Add(item);
        }
        return SubmitRejection.None;
    }

    /// <summary>
    /// How long a new request of <paramref name="cost"/> would take, at this decoder's observed pace: the call running
    /// now, then its own cost and, because requests take turns a slice at a time, up to as much of each admitted
    /// request's remaining cost as its own (a request shares the decoder with the others until it is done). Zero while
    /// no pace is known. Call under <c>admission</c>.
    /// </summary>
    private TimeSpan ExpectedTime(long cost)
    {
        double work = Interlocked.Read(ref running) + cost;
        foreach (var item in admitted) work += Math.Min(item.Remaining, cost);
        return drain.Seconds(work) is { } seconds ? TimeSpan.FromSeconds(Math.Min(seconds, TimeSpan.MaxValue.TotalSeconds / 2)) : TimeSpan.Zero;
    }

    /// <summary>Starts the worker thread.</summary>
    public void Start()
    {
        if (worker is not null) return;
        worker = new Thread(Work) { Name = "transduce-decoder-" + Model, IsBackground = true };
        worker.Start();
    }

    /// <summary>
    /// Refuses new requests, then waits until every admitted request has been answered. When
    /// <paramref name="cancellationToken"/> fires first (the host's shutdown time is up), the running decode is stopped
    /// and the requests still waiting get <see cref="ServiceStoppingException"/>; this method returns only once the worker
    /// has ended, so the model may be disposed right after.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        lock (admission)
        {
            stopping = true;
            channel.Writer.TryComplete();
        }
        if (worker is null) return;
        try
        {
            await workerDone.Task.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            abort.Cancel();
            await workerDone.Task;   // within one decoding step
        }
    }

    private void Work()
    {
        var pending = new List<WorkItem>();   // the line, in turn order
        try
        {
            var reader = channel.Reader;
            while (true)
            {
                if (pending.Count == 0)
                {
                    if (!reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult()) break;   // completed and empty
                    Gather(reader, pending);
                }
                else
                {
                    while (reader.TryRead(out var item)) pending.Add(item);
                }
                DropCancelled(pending);
                if (abort.IsCancellationRequested)
                {
                    while (reader.TryRead(out var item)) pending.Add(item);
                    foreach (var item in pending) Finish(item, stopped: true);
                    pending.Clear();
                    continue;
                }
                if (pending.Count == 0) continue;
                var turn = NextTurn(pending);
                Decode(turn, pending);
            }
        }
        catch (Exception e)
        {
            foreach (var item in pending) Finish(item, error: e);
            throw;
        }
        finally
        {
            workerDone.TrySetResult();
        }
    }

    /// <summary>
    /// Takes the first waiting request, then keeps taking until the window closes or the round is full. The window is
    /// only waited for when requests have been coming together (the last decoder call held more than one): a lone user
    /// of an idle service is not kept waiting for company that does not come. Requests that arrive while it decodes
    /// still form the next batch, and the window applies again from then on.
    /// </summary>
    private void Gather(ChannelReader<WorkItem> reader, List<WorkItem> pending)
    {
        var window = lastTurnRequests > 1 ? options.BatchWindow : TimeSpan.Zero;
        long deadline = Stopwatch.GetTimestamp() + (long)(window.TotalSeconds * Stopwatch.Frequency);
        int sentences = 0;
        while (sentences < options.MaxBatch)
        {
            if (reader.TryRead(out var item))
            {
                pending.Add(item);
                sentences += item.Job.Sentences.Count;
                continue;
            }
            var remaining = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), deadline);
            if (remaining <= TimeSpan.Zero) break;
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(abort.Token);
            wait.CancelAfter(remaining);
            try
            {
                if (!reader.WaitToReadAsync(wait.Token).AsTask().GetAwaiter().GetResult()) break;   // completed: drain what we hold
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    /// <summary>Answers the requests whose caller has gone or whose time ran out, and takes them out of the line.</summary>
    private void DropCancelled(List<WorkItem> pending)
    {
        int dropped = pending.RemoveAll(item =>
        {
            if (!item.Cancellation.IsCancellationRequested) return false;
            Finish(item, cancelled: true);
            return true;
        });
        if (dropped > 0) metrics.CountDropped(Model, dropped);
    }

    /// <summary>
    /// The next decoder call: the next slice of the request at the head of the line, then the waiting sentences of the
    /// requests behind it that share its search settings and have a similar cost, within the batch limits.
    /// </summary>
    private Turn NextTurn(List<WorkItem> pending)
    {
        // After a slice of a large request, small requests (what is left of them fits one decoder call) go first: however
        // many large requests take turns, a small one waits for at most one slice.
        int at = 0;
        if (lastTurnLarge)
        {
            int small = pending.FindIndex(i => RemainingCost(i) <= options.MaxBatchCost);
            if (small >= 0) at = small;
        }
        var head = pending[at];
        lastTurnLarge = RemainingCost(head) > options.MaxBatchCost;
        Debug.Assert(head.Next < head.Job.Sentences.Count, "a request in the line has nothing left to decode");
        var turn = new Turn(head);
        long reference = head.Job.Costs[head.Next].Cost;
        Take(turn, head, _ => true);
        for (int i = 1; i < pending.Count && !turn.Full; i++)
        {
            var item = pending[i];
            if (item.Job.Options.Beam != head.Job.Options.Beam || item.Job.Options.NBest != head.Job.Options.NBest
                || item.Job.Attention != head.Job.Attention || item.Job.Options.SourceLanguage != head.Job.Options.SourceLanguage
                || item.Job.Options.TargetLanguage != head.Job.Options.TargetLanguage || item.Job.Options.Task != head.Job.Options.Task)
                continue;
            Take(turn, item, cost => Similar(cost, reference));
        }
        // The head goes to the back of the line: the others get their turn before its next slice.
        pending.RemoveAt(at);
        pending.Add(head);
        return turn;
    }

    private static long RemainingCost(WorkItem item)
    {
        long cost = 0;
        for (int i = item.Next; i < item.Job.Sentences.Count; i++) cost += item.Job.Costs[i].Cost;
        return cost;
    }

    /// <summary>Within a factor of four of each other, or both tiny: decoded together, neither waits long for the other.</summary>
    private static bool Similar(long a, long b)
    {
        const long small = 64;
        return (a <= small && b <= small) || (a <= 4 * b && b <= 4 * a);
    }

    private void Take(Turn turn, WorkItem item, Func<long, bool> fits)
    {
        while (item.Next < item.Job.Sentences.Count && !turn.Full)
        {
            long cost = item.Job.Costs[item.Next].Cost;
            if (turn.Count > 0 && turn.Cost + cost > options.MaxBatchCost)
            {
                turn.Full = true;
                break;
            }
            if (!fits(cost)) break;
            turn.Add(item, item.Next, cost);
            item.Next++;
            Interlocked.Decrement(ref queued);
            if (turn.Count >= options.MaxBatch) turn.Full = true;
        }
    }

    private void Decode(Turn turn, List<WorkItem> pending)
    {
        var items = turn.Parts.Select(p => p.Item).Distinct().ToArray();
        lastTurnRequests = items.Length;
        var sentences = turn.Parts.Select(p => p.Item.Job.Sentences[p.Index]).ToArray();
        using var cancellation = new TurnCancellation(items.Select(i => i.Cancellation), abort.Token);
        long start = Stopwatch.GetTimestamp();
        // One activity per decoder call, linked to the requests it serves (it runs on the decoder thread, outside them).
        using var activity = ServingMetrics.Activities.HasListeners()
            ? ServingMetrics.Activities.StartActivity(ActivityKind.Internal, name: "transduce.decode",
                links: items.Where(i => i.Trace != default).Select(i => new ActivityLink(i.Trace)),
                tags: [new("transduce.model", Model), new("transduce.batch.sentences", sentences.Length), new("transduce.batch.requests", items.Length),
                    new("transduce.batch.cost", turn.Cost)])
            : null;
        IReadOnlyList<SentenceTranslation> outputs;
        Interlocked.Exchange(ref decoding, sentences.Length);
        Interlocked.Exchange(ref running, turn.Cost);
        try
        {
            outputs = backend.Translate(sentences, turn.Head.Job.Options, turn.Head.Job.Attention, cancellation.Token);
            if (outputs.Count != sentences.Length)
                throw new InvalidOperationException($"the backend returned {outputs.Count} results for {sentences.Length} sentences");
        }
        catch (OperationCanceledException) when (cancellation.Token.IsCancellationRequested)
        {
            // Every request in the call was cancelled (they are dropped on the next turn), or the service is stopping.
            metrics.CountDecodeCancelled(Model);
            activity?.SetStatus(ActivityStatusCode.Error, "cancelled");
            return;
        }
        catch (Exception e)
        {
            activity?.SetStatus(ActivityStatusCode.Error, e.GetType().Name);
            foreach (var item in items)
            {
                Finish(item, error: e);
                pending.Remove(item);
            }
            return;
        }
        finally
        {
            Interlocked.Exchange(ref decoding, 0);
            Interlocked.Exchange(ref running, 0);
        }
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        metrics.ObserveDecode(Model, seconds);
        metrics.ObserveBatch(Model, sentences.Length);
        budget.ObserveDrain(turn.Cost, seconds);
        drain.Observe(turn.Cost, seconds);
        long sourceTokens = 0, targetTokens = 0;
        for (int k = 0; k < turn.Parts.Count; k++)
        {
            var (item, index) = turn.Parts[k];
            item.Results[index] = outputs[k];
            item.Done++;
            item.Remaining -= item.Job.Costs[index].Cost;
            sourceTokens += item.Job.Costs[index].SourceTokens;
            targetTokens += outputs[k].TargetTokens;
        }
        metrics.CountTranslated(Model, sentences.Length, sourceTokens, targetTokens);
        foreach (var item in items.Where(i => i.Done == i.Job.Sentences.Count))
        {
            Finish(item);
            pending.Remove(item);
        }
    }

    /// <summary>Completes <paramref name="item"/> (with its translations unless told otherwise) and releases its cost.</summary>
    private void Finish(WorkItem item, bool cancelled = false, bool stopped = false, Exception? error = null)
    {
        // Sentences never handed to the decoder leave the queue count.
        int unscheduled = item.Job.Sentences.Count - item.Next;
        if (unscheduled > 0)
        {
            Interlocked.Add(ref queued, -unscheduled);
            item.Next = item.Job.Sentences.Count;
        }
        budget.Release(item.Job.Cost);
        lock (admission) admitted.Remove(item);
        if (error is not null) item.Completion.TrySetException(error);
        else if (stopped) item.Completion.TrySetException(new ServiceStoppingException());
        else if (cancelled) item.Completion.TrySetCanceled(item.Cancellation);
        else item.Completion.TrySetResult(item.Results!);
    }

    /// <summary>Ends the worker (stopping any decode within one step) and waits for it.</summary>
    public void Dispose()
    {
        lock (admission)
        {
            stopping = true;
            channel.Writer.TryComplete();
        }
        abort.Cancel();
        if (worker is not null && worker.ManagedThreadId != Environment.CurrentManagedThreadId) worker.Join();
    }
}
