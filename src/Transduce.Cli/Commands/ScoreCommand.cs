using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Transduce.Evaluation;

namespace Transduce.Cli.Commands;

/// <summary><c>transduce score</c>: sacreBLEU-compatible BLEU / chrF / chrF++ of existing hypothesis and reference files.</summary>
internal static class ScoreCommand
{
    private static readonly string[] s_metricNames = ["bleu", "chrf", "chrf++"];

    private static readonly JsonSerializerOptions s_json = new()
    {
        WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static Command Create()
    {
        var hyp = new Option<string>("--hyp") { Description = "Hypotheses (system output), UTF-8, one segment per line.", Required = true };
        var refs = new Option<string[]>("--ref")
        {
            Description = "References, UTF-8, one segment per line; repeat for more references per segment.",
            Required = true, AllowMultipleArgumentsPerToken = true,
        };
        var metric = new Option<string[]>("--metric")
        {
            Description = "Metrics: bleu, chrf, chrf++ (repeatable or comma-separated). [default: bleu]",
            AllowMultipleArgumentsPerToken = true,
        };
        var tokenize = new Option<string>("--tokenize") { Description = "BLEU tokenizer: 13a, intl or none.", DefaultValueFactory = _ => "13a" };
        CliValues.OneOf(tokenize, [.. SacreBleu.Tokenizers]);
        var lowercase = new Option<bool>("--lowercase") { Description = "Case-insensitive scoring (signature case:lc)." };
        var sentence = new Option<bool>("--sentence") { Description = "One score per segment (one metric only; BLEU uses effective order)." };
        var json = new Option<bool>("--json") { Description = "Print JSON (an array for several metrics or --sentence) instead of text." };
        var width = new Option<int>("--width")
        {
            Description = "Decimals of the score in text output (0 to 20).", DefaultValueFactory = _ => 1, CustomParser = r => CliValues.Number<int>(r, 0, 20) ?? 1,
        };

        var command = new Command("score", "Score a hypothesis file against reference files with BLEU, chrF or chrF++, as sacreBLEU does.")
        {
            hyp, refs, metric, tokenize, lowercase, sentence, json, width,
        };
        command.SetAction(r =>
        {
            var metrics = ParseMetrics(r.GetValue(metric) ?? []);
            bool perSentence = r.GetValue(sentence);
            if (perSentence && metrics.Count > 1)
                throw new ArgumentException("--sentence takes exactly one metric.");

            string hypPath = r.GetValue(hyp)!;
            string[] refPaths = r.GetValue(refs)!;
            var hyps = SacreBleu.ReadSegments(hypPath);
            var refStreams = new List<IReadOnlyList<string>>(refPaths.Length);
            foreach (string refPath in refPaths)
            {
                var stream = SacreBleu.ReadSegments(refPath);
                if (stream.Count != hyps.Count)
                    throw new InvalidDataException(
                        $"{hypPath} has {hyps.Count} lines but {refPath} has {stream.Count}; hypotheses and references need one segment per line.");
                refStreams.Add(stream);
            }
            if (hyps.Count == 0) throw new InvalidDataException($"{hypPath} has no lines to score.");

            var bleuOptions = new BleuOptions(Tokenize: r.GetValue(tokenize)!, Lowercase: r.GetValue(lowercase));
            bool asJson = r.GetValue(json);
            int w = r.GetValue(width);

            if (perSentence)
            {
                string m = metrics[0];
                var results = new List<Result>(hyps.Count);
                for (int i = 0; i < hyps.Count; i++)
                {
                    var segmentRefs = refStreams.Select(s => s[i]).ToArray();
                    results.Add(m == "bleu"
                        ? FromBleu(SacreBleu.SentenceScore(hyps[i], segmentRefs, bleuOptions), w)
                        : FromChrF(ChrF.SentenceScore(hyps[i], segmentRefs, ChrFOptionsFor(m, bleuOptions.Lowercase)), w));
                }
                if (asJson)
                {
                    var array = new JsonArray();
                    for (int i = 0; i < results.Count; i++)
                    {
                        var o = results[i].Json;
                        o.Insert(0, "line", i + 1);
                        array.Add(o);
                    }
                    Console.WriteLine(array.ToJsonString(s_json));
                }
                else
                {
                    foreach (var res in results) Console.WriteLine(res.Text);
                }
                return 0;
            }

            var corpus = metrics.Select(m => m == "bleu"
                ? FromBleu(SacreBleu.CorpusScore(hyps, refStreams, bleuOptions), w)
                : FromChrF(ChrF.CorpusScore(hyps, refStreams, ChrFOptionsFor(m, bleuOptions.Lowercase)), w)).ToList();
            if (asJson)
            {
                JsonNode node = corpus.Count == 1 ? corpus[0].Json : new JsonArray([.. corpus.Select(c => (JsonNode)c.Json)]);
                Console.WriteLine(node.ToJsonString(s_json));
            }
            else
            {
                // Several metrics: align the '=' signs, as sacreBLEU does.
                int pad = corpus.Max(c => c.Text.IndexOf(" = ", StringComparison.Ordinal));
                foreach (var c in corpus)
                {
                    int at = c.Text.IndexOf(" = ", StringComparison.Ordinal);
                    Console.WriteLine(c.Text[..at].PadLeft(pad) + c.Text[at..]);
                }
            }
            return 0;
        });
        return command;
    }

    private sealed record Result(string Text, JsonObject Json);

    private static List<string> ParseMetrics(string[] values)
    {
        var metrics = new List<string>();
        foreach (string value in values)
        {
            foreach (string part in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                string m = part.ToLowerInvariant();
                if (!s_metricNames.Contains(m))
                    throw new ArgumentException($"unknown metric '{part}'; expected one of: {string.Join(", ", s_metricNames)}.");
                if (!metrics.Contains(m)) metrics.Add(m);
            }
        }
        if (metrics.Count == 0) metrics.Add("bleu");
        return metrics;
    }

    private static ChrFOptions ChrFOptionsFor(string metric, bool lowercase) =>
        (metric == "chrf++" ? ChrFOptions.ChrFPlusPlus : new ChrFOptions()) with { Lowercase = lowercase };

    private static Result FromBleu(BleuScore s, int width)
    {
        var o = Header("BLEU", s.Score, s.Signature);
        o["verbose_score"] = ScoreFormat.Verbose(s);
        o["counts"] = new JsonArray([.. s.Counts.Select(c => (JsonNode)c)]);
        o["totals"] = new JsonArray([.. s.Totals.Select(c => (JsonNode)c)]);
        o["precisions"] = new JsonArray([.. s.Precisions.Select(p => (JsonNode)p)]);
        o["bp"] = s.BrevityPenalty;
        o["ratio"] = s.Ratio;
        o["sys_len"] = s.SysLen;
        o["ref_len"] = s.RefLen;
        AddSignatureFields(o, s.Signature);
        return new Result(ScoreFormat.Text(s, width), o);
    }

    private static Result FromChrF(ChrFScore s, int width)
    {
        var o = Header(s.Name, s.Score, s.Signature);
        AddSignatureFields(o, s.Signature);
        return new Result(ScoreFormat.Text(s, width), o);
    }

    private static JsonObject Header(string name, double score, string signature) => new()
    {
        ["name"] = name, ["score"] = score, ["signature"] = signature,
    };

    // sacreBLEU's JSON also lists the signature's fields one by one (as strings).
    private static void AddSignatureFields(JsonObject o, string signature)
    {
        foreach (string field in signature.Split('|'))
        {
            string[] kv = field.Split(':', 2);
            if (kv.Length == 2 && !o.ContainsKey(kv[0])) o[kv[0]] = kv[1];
        }
    }
}
