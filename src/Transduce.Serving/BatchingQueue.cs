using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;

namespace Transduce.Serving;

/// <summary>Why <see cref="BatchingQueue.TrySubmit"/> refused a request.</summary>
public enum SubmitRejection
{
    /// <summary>Accepted.</summary>
    None,

    /// <summary>Queueing the request would exceed <see cref="ServeOptions.QueueLimit"/> sentences.</summary>
    QueueFull,

    /// <summary>The service is shutting down and takes no new work.</summary>
    ShuttingDown,
}

/// <summary>
/// Micro-batching in front of the decoder. Requests are written to a channel; one dedicated worker thread takes the
/// first waiting request, keeps gathering for <see cref="ServeOptions.BatchWindow"/> (or until it holds
/// <see cref="ServeOptions.MaxBatch"/> sentences), groups what it gathered by (beam, n-best), drops requests whose
/// caller has gone or timed out, and decodes each group with one backend call. Stopping the service refuses new
/// requests and finishes every request already queued.
/// </summary>
public sealed class BatchingQueue : IHostedService, IDisposable
{
    private readonly ITranslationBackend backend;
    private readonly ServeOptions options;
    private readonly ServingMetrics metrics;
    private readonly Channel<WorkItem> channel = Channel.CreateUnbounded<WorkItem>(new UnboundedChannelOptions { SingleReader = true });
    private readonly TaskCompletionSource workerDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly object admission = new();
    private Thread? worker;
    private long queued;
    private bool stopping;

    /// <summary>Creates the queue; the worker starts with <see cref="StartAsync"/>.</summary>
    public BatchingQueue(ITranslationBackend backend, ServeOptions options, ServingMetrics metrics)
    {
        this.backend = backend;
        this.options = options;
        this.metrics = metrics;
        metrics.SetQueueGauge(() => Interlocked.Read(ref queued));
    }

    /// <summary>Sentences waiting for the decoder.</summary>
    public long QueuedSentences => Interlocked.Read(ref queued);

    /// <summary>
    /// Queues <paramref name="sentences"/> for translation. On success <paramref name="result"/> completes with one
    /// list of translations per sentence, or is cancelled if <paramref name="cancellation"/> fires before decoding starts.
    /// </summary>
    public SubmitRejection TrySubmit(IReadOnlyList<string> sentences, int beam, int nBest, CancellationToken cancellation,
        out Task<IReadOnlyList<IReadOnlyList<ScoredTranslation>>> result)
    {
        var item = new WorkItem(sentences, Math.Max(beam, nBest), nBest, cancellation);
        result = item.Completion.Task;
        lock (admission)
        {
            if (stopping) return SubmitRejection.ShuttingDown;
            if (queued + sentences.Count > options.QueueLimit) return SubmitRejection.QueueFull;
            Interlocked.Add(ref queued, sentences.Count);
            if (!channel.Writer.TryWrite(item))
            {
                Interlocked.Add(ref queued, -sentences.Count);
                return SubmitRejection.ShuttingDown;
            }
        }
        return SubmitRejection.None;
    }

    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken)
    {
        worker = new Thread(Work) { Name = "transduce-decoder", IsBackground = true };
        worker.Start();
        return Task.CompletedTask;
    }

    /// <summary>Refuses new requests, then waits until every queued request has been answered.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        lock (admission)
        {
            stopping = true;
            channel.Writer.TryComplete();
        }
        if (worker is not null) await workerDone.Task.WaitAsync(cancellationToken);
    }

    /// <summary>True once <see cref="StopAsync"/> has begun.</summary>
    public bool IsStopping
    {
        get { lock (admission) return stopping; }
    }

    private void Work()
    {
        try
        {
            var reader = channel.Reader;
            var round = new List<WorkItem>();
            while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
            {
                Gather(reader, round);
                Decode(round);
                round.Clear();
            }
        }
        finally
        {
            workerDone.TrySetResult();
        }
    }

    /// <summary>Takes what is waiting, then keeps taking until the window closes or the round is full.</summary>
    private void Gather(ChannelReader<WorkItem> reader, List<WorkItem> round)
    {
        long deadline = Stopwatch.GetTimestamp() + (long)(options.BatchWindow.TotalSeconds * Stopwatch.Frequency);
        int sentences = 0;
        while (sentences < options.MaxBatch)
        {
            if (reader.TryRead(out var item))
            {
                Interlocked.Add(ref queued, -item.Sentences.Count);
                round.Add(item);
                sentences += item.Sentences.Count;
                continue;
            }
            var remaining = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), deadline);
            if (remaining <= TimeSpan.Zero) break;
            using var window = new CancellationTokenSource(remaining);
            try
            {
                if (!reader.WaitToReadAsync(window.Token).AsTask().GetAwaiter().GetResult()) break;   // completed: drain what we hold
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    private void Decode(List<WorkItem> round)
    {
        foreach (var group in round.GroupBy(w => (w.Beam, w.NBest)))
        {
            var live = new List<WorkItem>();
            int droppedCount = 0;
            foreach (var item in group)
            {
                if (item.Cancellation.IsCancellationRequested)
                {
                    item.Completion.TrySetCanceled(item.Cancellation);
                    droppedCount++;
                }
                else live.Add(item);
            }
            if (droppedCount > 0) metrics.CountDropped(droppedCount);
            if (live.Count == 0) continue;

            var sentences = live.SelectMany(w => w.Sentences).ToList();
            try
            {
                long start = Stopwatch.GetTimestamp();
                var outputs = backend.Translate(sentences, group.Key.Beam, group.Key.NBest, options.MaxBatch);
                metrics.ObserveDecode(Stopwatch.GetElapsedTime(start).TotalSeconds);
                if (outputs.Count != sentences.Count)
                    throw new InvalidOperationException($"the backend returned {outputs.Count} results for {sentences.Count} sentences");
                foreach (var chunk in sentences.Chunk(options.MaxBatch)) metrics.ObserveBatch(chunk.Length);
                long sourceTokens = sentences.Sum(s => (long)backend.CountTokens(s));
                long targetTokens = outputs.Sum(o => o.Count > 0 ? (long)backend.CountTokens(o[0].Text) : 0);
                metrics.CountTranslated(sentences.Count, sourceTokens, targetTokens);
                int offset = 0;
                foreach (var item in live)
                {
                    item.Completion.TrySetResult(outputs.Skip(offset).Take(item.Sentences.Count).ToArray());
                    offset += item.Sentences.Count;
                }
            }
            catch (Exception e)
            {
                foreach (var item in live) item.Completion.TrySetException(e);
            }
        }
    }

    /// <inheritdoc />
    public void Dispose() => channel.Writer.TryComplete();

    private sealed record WorkItem(IReadOnlyList<string> Sentences, int Beam, int NBest, CancellationToken Cancellation)
    {
        public TaskCompletionSource<IReadOnlyList<IReadOnlyList<ScoredTranslation>>> Completion { get; } =
            new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
