using System.Runtime.InteropServices;
using System.Text;
using static Transduce.Text.BpeSymbols;

namespace Transduce.Text;

/// <summary>
/// Learns the pieces and merges of a <see cref="BpeTokenizer"/> (see <see cref="BpeTokenizer.Train"/>): count the
/// pre-tokens, choose the alphabet, then merge the most frequent adjacent pair again and again, updating pair counts
/// for the words that contain the merged pair only.
/// </summary>
internal sealed class BpeTrainer
{
    private readonly BpeTrainingOptions options;
    private readonly List<string> pieces;
    private readonly Dictionary<string, int> ids;
    private readonly List<(string Left, string Right)> merges = [];

    // Words (distinct pre-tokens) as symbol sequences, with their counts and lengths after the merges so far.
    private int[][] symbols = [];
    private int[] lengths = [];
    private long[] frequencies = [];

    // Pair statistics: occurrences (weighted by word counts) and the words each pair may occur in.
    private readonly Dictionary<long, long> pairCounts = [];
    private readonly Dictionary<long, List<int>> where = [];

    private BpeTrainer(BpeTrainingOptions options)
    {
        this.options = options;
        pieces = new List<string>(options.VocabSize);
        ids = new Dictionary<string, int>(options.VocabSize, StringComparer.Ordinal);
    }

    /// <summary>Learns a model from <paramref name="sentences"/>; the result depends only on their multiset.</summary>
    public static BpeTokenizer Train(IEnumerable<string> sentences, BpeTrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(sentences);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var trainer = new BpeTrainer(options);
        var words = CountWords(sentences, options.SplitPunctuation);
        var alphabet = trainer.ChooseAlphabet(words);
        trainer.StartStatistics(words, alphabet);
        trainer.Merge();
        return new BpeTokenizer([.. trainer.pieces], trainer.ids, [.. trainer.merges], options.SplitPunctuation);
    }

    /// <summary>1. Pre-tokens (words) and their counts, separately for those with and without the word-start marker.</summary>
    private static List<(string Body, bool Marker, long Count)> CountWords(IEnumerable<string> sentences, bool split)
    {
        var marked = new Dictionary<string, long>(StringComparer.Ordinal);
        var plain = new Dictionary<string, long>(StringComparer.Ordinal);
        var markedLookup = marked.GetAlternateLookup<ReadOnlySpan<char>>();
        var plainLookup = plain.GetAlternateLookup<ReadOnlySpan<char>>();
        var spans = new List<PreToken>();
        foreach (string? sentence in sentences)
        {
            if (sentence is null)
            {
                throw new ArgumentException("A sentence is null.", nameof(sentences));
            }
            string text = BpePreTokenizer.ReplaceLoneSurrogates(sentence);
            BpePreTokenizer.Split(text, split, spans);
            foreach (PreToken t in spans)
            {
                ReadOnlySpan<char> body = text.AsSpan(t.Start, t.Length);
                ref long count = ref t.Marker
                    ? ref CollectionsMarshal.GetValueRefOrAddDefault(markedLookup, body, out _)
                    : ref CollectionsMarshal.GetValueRefOrAddDefault(plainLookup, body, out _);
                count++;
            }
        }
        var words = new List<(string Body, bool Marker, long Count)>(marked.Count + plain.Count);
        foreach (KeyValuePair<string, long> kv in marked)
        {
            words.Add((kv.Key, true, kv.Value));
        }
        foreach (KeyValuePair<string, long> kv in plain)
        {
            words.Add((kv.Key, false, kv.Value));
        }
        return words;
    }

    /// <summary>
    /// 2. The base pieces, then the alphabet: characters occurring often enough, most frequent first, as many as fit.
    /// Returns code point → piece id.
    /// </summary>
    private Dictionary<int, int> ChooseAlphabet(List<(string Body, bool Marker, long Count)> words)
    {
        var runeCounts = new Dictionary<int, long>();
        foreach ((string body, _, long count) in words)
        {
            foreach (Rune rune in body.EnumerateRunes())
            {
                if (rune.Value != '\u2581')
                {
                    CollectionsMarshal.GetValueRefOrAddDefault(runeCounts, rune.Value, out _) += count;
                }
            }
        }
        var characters = new List<KeyValuePair<int, long>>();
        foreach (KeyValuePair<int, long> kv in runeCounts)
        {
            if (kv.Value >= options.MinCharacterFrequency)
            {
                characters.Add(kv);
            }
        }
        characters.Sort(static (x, y) => x.Value != y.Value ? y.Value.CompareTo(x.Value) : x.Key.CompareTo(y.Key));
        int room = options.VocabSize - BpeTokenizer.FirstLearnedId;
        if (characters.Count > room)
        {
            characters.RemoveRange(room, characters.Count - room);
        }

        pieces.AddRange(BasePieces());
        foreach (KeyValuePair<int, long> kv in characters)
        {
            pieces.Add(char.ConvertFromUtf32(kv.Key));
        }
        for (int id = 0; id < pieces.Count; id++)
        {
            ids.Add(pieces[id], id);
        }
        var alphabet = new Dictionary<int, int>(characters.Count);
        for (int i = 0; i < characters.Count; i++)
        {
            alphabet.Add(characters[i].Key, BpeTokenizer.FirstLearnedId + i);
        }
        return alphabet;
    }

    /// <summary>3. Words as symbol sequences, and the initial pair statistics.</summary>
    private void StartStatistics(List<(string Body, bool Marker, long Count)> words, Dictionary<int, int> alphabet)
    {
        int wordCount = words.Count;
        symbols = new int[wordCount][];
        lengths = new int[wordCount];
        frequencies = new long[wordCount];
        var buffer = new List<int>();
        for (int w = 0; w < wordCount; w++)
        {
            buffer.Clear();
            if (words[w].Marker)
            {
                buffer.Add(BpeTokenizer.MarkerId);
            }
            AppendSymbols(words[w].Body, alphabet, buffer);
            int[] s = buffer.ToArray();
            symbols[w] = s;
            lengths[w] = s.Length;
            long f = words[w].Count;
            frequencies[w] = f;
            for (int i = 0; i + 1 < s.Length; i++)
            {
                if (IsMergeable(s[i]) && IsMergeable(s[i + 1]))
                {
                    long key = PairKey(s[i], s[i + 1]);
                    CollectionsMarshal.GetValueRefOrAddDefault(pairCounts, key, out _) += f;
                    AddWhere(key, w);
                }
            }
        }
    }

    /// <summary>
    /// 4. Merges until the vocabulary is full or no pair is frequent enough. A max-heap on (count, then smaller pair key)
    /// with lazy deletion: an entry is valid only if its count is the pair's current count. Counts that grow get a fresh
    /// entry; stale entries with a larger count are re-queued.
    /// </summary>
    private void Merge()
    {
        var heap = new PriorityQueue<long, (long NegCount, long Key)>(pairCounts.Count);
        foreach (KeyValuePair<long, long> kv in pairCounts)
        {
            heap.Enqueue(kv.Key, (-kv.Value, kv.Key));
        }
        var recorded = new HashSet<long>();
        var forbidden = new HashSet<long>();
        var stamps = new int[symbols.Length];
        var delta = new Dictionary<long, long>();
        int step = 0;
        long minPair = Math.Max(1, options.MinPairFrequency);
        while (pieces.Count < options.VocabSize && heap.TryDequeue(out long pair, out (long NegCount, long Key) priority))
        {
            long queued = -priority.NegCount;
            long current = pairCounts.GetValueOrDefault(pair);
            if (current != queued)
            {
                if (current > 0 && current < queued)
                {
                    heap.Enqueue(pair, (-current, pair));
                }
                continue;
            }
            if (current < minPair)
            {
                break;
            }
            if (forbidden.Contains(pair))
            {
                continue;
            }
            int a = (int)(pair >> 32);
            int b = (int)(pair & 0xFFFFFFFF);
            string merged = pieces[a] + pieces[b];
            if (!ids.TryGetValue(merged, out int c))
            {
                c = pieces.Count;
                pieces.Add(merged);
                ids.Add(merged, c);
            }
            else if (c < BpeTokenizer.FirstLearnedId)
            {
                // The concatenation spells a reserved or byte token (e.g. "<unk>"); such a piece would be ambiguous.
                forbidden.Add(pair);
                continue;
            }
            if (recorded.Add(pair))
            {
                merges.Add((pieces[a], pieces[b]));
            }

            step++;
            where.Remove(pair, out List<int>? occurrences);
            delta.Clear();
            foreach (int w in occurrences ?? [])
            {
                if (stamps[w] == step)
                {
                    continue;
                }
                stamps[w] = step;
                MergeInWord(w, a, b, c, delta);
            }
            foreach (KeyValuePair<long, long> kv in delta)
            {
                if (kv.Value == 0)
                {
                    continue;
                }
                ref long count = ref CollectionsMarshal.GetValueRefOrAddDefault(pairCounts, kv.Key, out _);
                count += kv.Value;
                long updated = count;
                if (updated <= 0)
                {
                    pairCounts.Remove(kv.Key);
                }
                else if (kv.Value > 0)
                {
                    heap.Enqueue(kv.Key, (-updated, kv.Key));
                }
            }
        }
    }

    /// <summary>Replaces (a, b) by c in word <paramref name="word"/>, recording the pair-count changes in <paramref name="delta"/>.</summary>
    private void MergeInWord(int word, int a, int b, int c, Dictionary<long, long> delta)
    {
        int[] s = symbols[word];
        int n = lengths[word];
        long frequency = frequencies[word];
        bool found = false;
        for (int i = 0; i + 1 < n; i++)
        {
            if (s[i] == a && s[i + 1] == b)
            {
                found = true;
                break;
            }
        }
        if (!found)
        {
            return;
        }
        for (int i = 0; i + 1 < n; i++)
        {
            if (IsMergeable(s[i]) && IsMergeable(s[i + 1]))
            {
                CollectionsMarshal.GetValueRefOrAddDefault(delta, PairKey(s[i], s[i + 1]), out _) -= frequency;
            }
        }
        int j = ReplacePair(s.AsSpan(0, n), a, b, c);
        for (int i = 0; i + 1 < j; i++)
        {
            if (IsMergeable(s[i]) && IsMergeable(s[i + 1]))
            {
                long key = PairKey(s[i], s[i + 1]);
                CollectionsMarshal.GetValueRefOrAddDefault(delta, key, out _) += frequency;
                if (s[i] == c || s[i + 1] == c)
                {
                    AddWhere(key, word);
                }
            }
        }
        lengths[word] = j;
    }

    private void AddWhere(long key, int word)
    {
        ref List<int>? list = ref CollectionsMarshal.GetValueRefOrAddDefault(where, key, out _);
        list ??= [];
        if (list.Count == 0 || list[^1] != word)
        {
            list.Add(word);
        }
    }
}
