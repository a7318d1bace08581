using Transduce.Inference;

namespace Transduce.Serving;

// The line's bookkeeping: a request in it, a decoder call's parts, and the cancellation of a call.
internal sealed partial class BatchingQueue
{
    private sealed class WorkItem(TranslationJob job, CancellationToken cancellation)
    {
        public TranslationJob Job { get; } = job;

        public CancellationToken Cancellation { get; } = cancellation;

        /// <summary>The request's trace context when it was submitted (the decode activities link to it), else default.</summary>
        public System.Diagnostics.ActivityContext Trace { get; } = System.Diagnostics.Activity.Current?.Context ?? default;

        public SentenceTranslation[] Results { get; } = new SentenceTranslation[job.Sentences.Count];

        /// <summary>Sentences handed to the decoder so far (they are taken in order).</summary>
        public int Next { get; set; }

        /// <summary>Sentences translated so far.</summary>
        public int Done { get; set; }

        private long remaining = job.Cost;

        /// <summary>The estimated cost of the sentences not yet translated (written by the worker, read at admission).</summary>
        public long Remaining
        {
            get => Interlocked.Read(ref remaining);
            set => Interlocked.Exchange(ref remaining, value);
        }

        public TaskCompletionSource<IReadOnlyList<SentenceTranslation>> Completion { get; } =
            new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class Turn(WorkItem head)
    {
        public WorkItem Head { get; } = head;

        public List<(WorkItem Item, int Index)> Parts { get; } = [];

        public long Cost { get; private set; }

        public int Count => Parts.Count;

        public bool Full { get; set; }

        public void Add(WorkItem item, int index, long cost)
        {
            Parts.Add((item, index));
            Cost += cost;
        }
    }

    /// <summary>Fires when every request of a decoder call has been cancelled, or when the service aborts.</summary>
    private sealed class TurnCancellation : IDisposable
    {
        private readonly CancellationTokenSource source;
        private readonly List<CancellationTokenRegistration> registrations = [];
        private int alive;

        public TurnCancellation(IEnumerable<CancellationToken> requests, CancellationToken abort)
        {
            source = CancellationTokenSource.CreateLinkedTokenSource(abort);
            var tokens = requests.ToArray();
            alive = tokens.Length;
            foreach (var token in tokens)
                registrations.Add(token.Register(() =>
                {
                    if (Interlocked.Decrement(ref alive) == 0) source.Cancel();
                }));
        }

        public CancellationToken Token => source.Token;

        public void Dispose()
        {
            foreach (var r in registrations) r.Dispose();   // waits for a callback that is running
            source.Dispose();
        }
    }
}
