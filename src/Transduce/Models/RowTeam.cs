using System.Diagnostics;

namespace Transduce.Models;

/// <summary>
/// Splits one-row panel products (<see cref="RowLinear"/>) over the calling thread and helper threads of its own, so that
/// the batch-1 step streams its weights with as many cores as libtorch's intra-op threads. At one row a product reads each
/// weight once, and one core cannot draw the memory bandwidth two can.
/// <para>
/// Work is cut into chunks of panels that the caller and the helpers claim one at a time, so a helper the scheduler has
/// not run yet costs nothing: the caller takes its chunks (libtorch's OpenMP workers, spinning after a parallel region,
/// may hold the other core). Between products a helper spins for <see cref="SpinMicroseconds"/>, then sleeps until the
/// next one, so it holds no core while libtorch works (the encoder, batched steps). Each output is computed by one
/// thread in the panel order, so the result is the same whatever the split.
/// </para>
/// </summary>
internal sealed unsafe class RowTeam : IDisposable
{
    /// <summary>How long an idle helper waits for the next product before it sleeps.</summary>
    public const int SpinMicroseconds = 50;

    /// <summary>Products of fewer multiply-adds than this run on the caller alone: splitting costs more than it saves.</summary>
    public const long MinSplitWork = 64 * 1024;

    // One product: chunks of panels claimed through Next; Done counts finished chunks.
    private sealed class Job(RowLinear linear, nint x, nint y, nint residual, int panels, int chunk)
    {
        public readonly RowLinear Linear = linear;
        public readonly nint X = x, Y = y, Residual = residual;
        public readonly int Panels = panels, Chunk = chunk, Chunks = (panels + chunk - 1) / chunk;
        public int Next, Done;

        // Claims and runs chunks until none is left; returns when this thread has no more to do.
        public void Work()
        {
            int c;
            while ((c = Interlocked.Increment(ref Next) - 1) < Chunks)
            {
                int first = c * Chunk;
                Linear.Forward((float*)X, (float*)Y, (float*)Residual, first, Math.Min(Panels, first + Chunk));
                Interlocked.Increment(ref Done);
            }
        }
    }

    private sealed class Helper : IDisposable
    {
        public readonly Thread Thread;
        private readonly ManualResetEventSlim wake = new(false);
        private Job? job;
        private int posted, sleeping, stopping;

        public Helper()
        {
            Thread = new Thread(Run) { IsBackground = true, Name = "Transduce row team" };
            Thread.Start();
        }

        public void Post(Job next)
        {
            Volatile.Write(ref job, next);
            Interlocked.Increment(ref posted);                 // a full fence: the helper sees the job, or we see it asleep
            if (Volatile.Read(ref sleeping) == 1) wake.Set();
        }

        private void Run()
        {
            int seen = 0;
            long spin = SpinMicroseconds * Stopwatch.Frequency / 1_000_000;
            while (Volatile.Read(ref stopping) == 0)
            {
                long until = Stopwatch.GetTimestamp() + spin;
                while (Volatile.Read(ref posted) == seen)
                {
                    if (Volatile.Read(ref stopping) != 0) return;
                    if (Stopwatch.GetTimestamp() < until)
                    {
                        Thread.SpinWait(8);
                        continue;
                    }
                    wake.Reset();
                    Interlocked.Exchange(ref sleeping, 1);      // a full fence before reading posted (see Post)
                    if (Volatile.Read(ref posted) == seen && Volatile.Read(ref stopping) == 0) wake.Wait();
                    Interlocked.Exchange(ref sleeping, 0);
                    until = Stopwatch.GetTimestamp() + spin;
                }
                seen = Volatile.Read(ref posted);
                if (Volatile.Read(ref job) is { } current)
                {
                    current.Work();
                    Interlocked.CompareExchange(ref job, null, current); // hold no panels between products
                }
            }
        }

        public void Stop()
        {
            Interlocked.Exchange(ref stopping, 1);
            wake.Set();
        }

        public void Dispose()
        {
            Stop();
            Thread.Join();
            wake.Dispose();
        }
    }

    private readonly Helper[] helpers;

    /// <summary>A team of <paramref name="threads"/> threads: the caller and <paramref name="threads"/> − 1 helpers.</summary>
    public RowTeam(int threads) => helpers = Enumerable.Range(0, Math.Max(0, threads - 1)).Select(_ => new Helper()).ToArray();

    /// <summary>The helpers' threads.</summary>
    internal IReadOnlyList<Thread> HelperThreads => helpers.Select(h => h.Thread).ToList();

    /// <summary>Threads that multiply: the caller and the helpers.</summary>
    public int Threads => helpers.Length + 1;

    /// <summary><see cref="RowLinear.Forward(float*, float*, float*)"/>, split over the team when the product is large enough.</summary>
    public void Forward(RowLinear linear, float* x, float* y, float* residual)
    {
        int panels = linear.PaddedOut / RowLinear.Panel;
        if (helpers.Length == 0 || panels < 2 || (long)linear.In * linear.PaddedOut < MinSplitWork)
        {
            linear.Forward(x, y, residual);
            return;
        }
        // About four chunks per thread: a late helper leaves little for the others to wait on.
        int chunk = Math.Max(1, panels / (4 * Threads));
        // A new job per product (a few dozen small objects a step): a late helper can only claim from the job it was handed.
        var job = new Job(linear, (nint)x, (nint)y, (nint)residual, panels, chunk);
        foreach (var h in helpers) h.Post(job);
        job.Work();
        // Every chunk is claimed; wait for those a helper is still multiplying.
        while (Volatile.Read(ref job.Done) < job.Chunks) Thread.SpinWait(4);
    }

    /// <summary>Stops the helpers and waits for them.</summary>
    public void Dispose()
    {
        foreach (var h in helpers) h.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>Stops the helpers of a team nobody disposed (their threads do not keep the team alive).</summary>
    ~RowTeam()
    {
        foreach (var h in helpers) h.Stop();
    }
}
