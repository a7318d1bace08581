using System.Text;
using System.Text.Json;
using CsCheck;
using Transduce.Cli.Commands;
using Xunit.Abstractions;

namespace Transduce.Tests.Fuzz;

/// <summary>
/// The bounded fuzzing harness behind the tests of this folder (CsCheck): each run picks a valid seed, applies one to six
/// edits (bits flipped, bytes inserted or deleted, the input cut short, a piece of another seed spliced in, a token of the
/// target's dictionary inserted or written over) and hands the bytes to the parser. The parser must either succeed or
/// throw one of the exceptions the CLI reports as one line (<see cref="IsUserError"/>) with a one-line message; any other
/// exception, a run over <see cref="HangLimit"/> or one allocating more than <see cref="AllocationLimit"/> fails the test
/// with the CsCheck seed and the edits that reproduce it.
/// </summary>
/// <remarks>
/// In the suite each target replays a fixed set of cases (one fixed generator, so CI is red only when a change breaks a parser);
/// the test-only environment variable <c>TRANSDUCE_FUZZ_SECONDS</c> explores with random seeds for that long instead
/// (tests/Transduce.Tests/Fuzz/README.md). Executions are
/// written to the test output.
/// </remarks>
internal static class Fuzzer
{
    /// <summary>Seconds each target explores: <c>TRANSDUCE_FUZZ_SECONDS</c> when set to a positive integer, else null.</summary>
    public static int? Seconds =>
        int.TryParse(Environment.GetEnvironmentVariable("TRANSDUCE_FUZZ_SECONDS"), out int s) && s > 0 ? s : null;

    // In the regular suite (and CI) each target replays the same cases, so a run is red only for a change that breaks a
    // parser, never for a case found by luck; new ground is explored with TRANSDUCE_FUZZ_SECONDS (random seeds, by time).
    private const uint SuiteStream = 25;
    private const ulong SuiteSeed = 20261206;
    private const int SuiteCases = 1500;

    /// <summary>The longest one parse may take before the run counts as a hang.</summary>
    public static readonly TimeSpan HangLimit = TimeSpan.FromSeconds(10);

    /// <summary>The most managed memory one parse of an input of <paramref name="length"/> bytes may allocate.</summary>
    public static long AllocationLimit(int length) => 64L * length + (64L << 20);

    /// <summary>The exceptions the CLI prints as one line and exits 1 with, the only ones a parser may throw on bad input.</summary>
    public static bool IsUserError(Exception e) => CliErrors.IsUserError(e);

    /// <summary>
    /// Checks that <paramref name="e"/> is a user error with a one-line message; <paramref name="context"/> (the target,
    /// the seed or the mutation) is named in the failure.
    /// </summary>
    public static void AssertOneLineUserError(Exception e, string context)
    {
        if (!IsUserError(e))
            Assert.Fail($"{context}: {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
        Assert.False(string.IsNullOrWhiteSpace(e.Message), $"{context}: {e.GetType().Name} with an empty message");
        Assert.False(e.Message.TrimEnd().Contains('\n'), $"{context}: a message of several lines: {e.Message}");
    }

    /// <summary>
    /// Fuzzes <paramref name="parse"/> for <see cref="Seconds"/> seconds from <paramref name="seeds"/>, each of which must
    /// parse as it is; <paramref name="tokens"/> are the target's dictionary (values and syntax worth inserting).
    /// <paramref name="probes"/> (hostile inputs, such as the issue's) must each be rejected with one line, and are
    /// mutated as the seeds are.
    /// </summary>
    public static void Run(ITestOutputHelper output, string target, IReadOnlyList<byte[]> seeds, IReadOnlyList<string> tokens, Action<byte[]> parse,
        IReadOnlyList<byte[]>? probes = null)
    {
        Assert.NotEmpty(seeds);
        probes ??= [];
        for (int i = 0; i < probes.Count; i++)
        {
            var probe = probes[i];
            var e = Assert.ThrowsAny<Exception>(() => parse(probe));
            AssertOneLineUserError(e, $"{target}: probe {i}");
        }
        seeds = [.. seeds, .. probes];
        for (int i = 0; i < seeds.Count - probes.Count; i++)
        {
            try
            {
                parse(seeds[i]);
            }
            catch (Exception e)
            {
                Assert.Fail($"{target}: seed {i} (unmutated) does not parse: {e.GetType().Name}: {e.Message}");
            }
        }
        var dictionary = tokens.Select(t => Encoding.UTF8.GetBytes(t)).ToArray();
        long executions = 0, rejected = 0;
        var cases = Gen.Select(Gen.Int[0, seeds.Count - 1], Edits(seeds.Count, dictionary.Length).Array[1, 6], (s, e) => new Case(s, e));
        void Check(Case c)
        {
            byte[] input = c.Apply(seeds, dictionary);
            Interlocked.Increment(ref executions);
            var run = Task.Run(() =>
            {
                long before = GC.GetAllocatedBytesForCurrentThread();
                try
                {
                    parse(input);
                    return (Error: (Exception?)null, Allocated: GC.GetAllocatedBytesForCurrentThread() - before);
                }
                catch (Exception e)
                {
                    return (Error: e, Allocated: GC.GetAllocatedBytesForCurrentThread() - before);
                }
            });
            if (!run.Wait(HangLimit))
                Assert.Fail($"{target}: {c} still parsing after {HangLimit.TotalSeconds} s (a hang)");
            var (error, allocated) = run.Result;
            if (allocated > AllocationLimit(input.Length))
                Assert.Fail($"{target}: {c} allocated {allocated:N0} bytes for a {input.Length:N0}-byte input");
            if (error is null) return;
            Interlocked.Increment(ref rejected);
            AssertOneLineUserError(error, $"{target}: {c}");
        }
        if (Seconds is { } seconds)
            cases.Sample(Check, writeLine: output.WriteLine, time: seconds, threads: 1, print: c => c.ToString());
        else
        {
            // CsCheck's seed fixes only a sample's first case: the suite's cases come from one fixed generator instead.
            var random = new PCG(SuiteStream, SuiteSeed);
            for (int i = 0; i < SuiteCases; i++) Check(cases.Generate(random, null, out _));
        }
        output.WriteLine($"fuzz {target}: {executions} executions ({(Seconds is { } t ? $"{t} s, random seeds" : "the suite's fixed cases")}), {executions - rejected} accepted, {rejected} rejected with one line");
        Assert.True(executions > 0, $"{target}: no executions");
    }

    private static Gen<Edit> Edits(int seedCount, int tokenCount)
    {
        var edits = new List<(int, IGen<Edit>)>
        {
            (4, Gen.Select(Gen.UInt, Gen.Byte[1, 255], (p, m) => (Edit)new Flip(p, m))),
            (2, Gen.Select(Gen.UInt, Gen.Byte.Array[1, 8], (p, b) => (Edit)new Insert(p, b))),
            (2, Gen.Select(Gen.UInt, Gen.Int[1, 64], (p, n) => (Edit)new Delete(p, n))),
            (1, Gen.UInt.Select(p => (Edit)new Truncate(p))),
            (1, Gen.Select(Gen.Int[0, seedCount - 1], Gen.UInt, Gen.UInt, Gen.Int[1, 4096], (s, at, from, n) => (Edit)new Splice(s, at, from, n))),
        };
        if (tokenCount > 0)
            edits.Add((4, Gen.Select(Gen.Int[0, tokenCount - 1], Gen.UInt, Gen.Int[0, 8], (t, p, over) => (Edit)new Token(t, p, over))));
        return Gen.Frequency(edits.ToArray());
    }

    /// <summary>One fuzz input: a seed and the edits applied to it in order.</summary>
    private sealed record Case(int Seed, Edit[] Edits)
    {
        public byte[] Apply(IReadOnlyList<byte[]> seeds, byte[][] tokens)
        {
            byte[] data = seeds[Seed];
            foreach (var edit in Edits) data = edit.Apply(data, seeds, tokens);
            return data;
        }

        public override string ToString() => $"seed {Seed}, edits [{string.Join("; ", Edits.Select(e => e.ToString()))}]";
    }

    /// <summary>A change to the input; positions are taken modulo the current length, so every edit applies to any input.</summary>
    private abstract record Edit
    {
        public abstract byte[] Apply(byte[] data, IReadOnlyList<byte[]> seeds, byte[][] tokens);

        protected static int At(uint position, int length) => length == 0 ? 0 : (int)(position % (uint)(length + 1));
    }

    private sealed record Flip(uint Position, byte Mask) : Edit
    {
        public override byte[] Apply(byte[] data, IReadOnlyList<byte[]> seeds, byte[][] tokens)
        {
            if (data.Length == 0) return data;
            var copy = (byte[])data.Clone();
            copy[Position % (uint)copy.Length] ^= Mask;
            return copy;
        }
    }

    private sealed record Insert(uint Position, byte[] Bytes) : Edit
    {
        public override byte[] Apply(byte[] data, IReadOnlyList<byte[]> seeds, byte[][] tokens)
        {
            int at = At(Position, data.Length);
            return [.. data.AsSpan(0, at), .. Bytes, .. data.AsSpan(at)];
        }

        public override string ToString() => $"Insert {{ Position = {Position}, Bytes = {Convert.ToHexString(Bytes)} }}";
    }

    private sealed record Delete(uint Position, int Count) : Edit
    {
        public override byte[] Apply(byte[] data, IReadOnlyList<byte[]> seeds, byte[][] tokens)
        {
            int at = At(Position, data.Length), n = Math.Min(Count, data.Length - at);
            return [.. data.AsSpan(0, at), .. data.AsSpan(at + n)];
        }
    }

    private sealed record Truncate(uint Length) : Edit
    {
        public override byte[] Apply(byte[] data, IReadOnlyList<byte[]> seeds, byte[][] tokens) => data[..At(Length, data.Length)];
    }

    /// <summary>Bytes of seed <paramref name="Other"/> from <paramref name="From"/> written over the input at <paramref name="Where"/>.</summary>
    private sealed record Splice(int Other, uint Where, uint From, int Count) : Edit
    {
        public override byte[] Apply(byte[] data, IReadOnlyList<byte[]> seeds, byte[][] tokens)
        {
            byte[] other = seeds[Other];
            int from = At(From, other.Length), n = Math.Min(Count, other.Length - from);
            int at = At(Where, data.Length);
            return [.. data.AsSpan(0, at), .. other.AsSpan(from, n), .. data.AsSpan(Math.Min(data.Length, at + n))];
        }
    }

    /// <summary>Token <paramref name="Index"/> of the dictionary inserted at <paramref name="Position"/>, replacing <paramref name="Over"/> bytes.</summary>
    private sealed record Token(int Index, uint Position, int Over) : Edit
    {
        public override byte[] Apply(byte[] data, IReadOnlyList<byte[]> seeds, byte[][] tokens)
        {
            int at = At(Position, data.Length), n = Math.Min(Over, data.Length - at);
            return [.. data.AsSpan(0, at), .. tokens[Index], .. data.AsSpan(at + n)];
        }
    }
}
