using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Transduce.IO;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.RepresentationModel;

namespace Transduce.Training;

/// <summary>The YAML side of <see cref="RunConfigFile"/>: YAML to a JSON tree with key lines, and a configuration back to YAML.</summary>
internal static partial class RunConfigFile
{
    // ---- YAML in and out (YamlDotNet's representation model; scalars typed as YAML 1.2's core schema does) ----

    /// <summary>How deep mappings and lists may nest in a configuration file (its own tree is four levels deep).</summary>
    internal const int MaxYamlDepth = 32;

    /// <summary>Reads YAML into a JSON tree, with the line of every key by dotted path.</summary>
    /// <remarks>
    /// Anchors and aliases are refused: an alias makes a graph of a tree (<c>a: &amp;a [*a]</c> is a cycle, and ten
    /// aliases of ten aliases are 10¹⁰ nodes from a few lines), so what is read is never larger than its text.
    /// </remarks>
    private static (JsonNode? Node, Dictionary<string, int> Lines) ReadYaml(string text, string source)
    {
        CheckSize(text.Length, source);
        var stream = new YamlStream();
        try
        {
            stream.Load(new TreeOnlyParser(text, source));
        }
        catch (YamlException e)
        {
            throw new InvalidDataException($"{source}:{e.Start.Line}: not valid YAML ({e.Message})", e);
        }
        catch (InvalidOperationException e) // YamlDotNet's scanner on some malformed input ("...\n" before a document)
        {
            throw new InvalidDataException($"{source}: not valid YAML ({ErrorText.OneLine(e.Message)})", e);
        }
        var lines = new Dictionary<string, int>(StringComparer.Ordinal);
        if (stream.Documents.Count == 0) return (null, lines);
        if (stream.Documents.Count > 1) throw new InvalidDataException($"{source}: holds {stream.Documents.Count} YAML documents; a configuration is one");
        return (ToJson(stream.Documents[0].RootNode, "", lines, source), lines);
    }

    /// <summary>YamlDotNet's parser, stopping at the first anchor or alias and at nesting deeper than <see cref="MaxYamlDepth"/>.</summary>
    private sealed class TreeOnlyParser(string text, string source) : IParser
    {
        private readonly Parser inner = new(new StringReader(text));
        private int depth;

        public ParsingEvent? Current => inner.Current;

        public bool MoveNext()
        {
            if (!inner.MoveNext()) return false;
            switch (inner.Current)
            {
                case AnchorAlias alias:
                    throw new InvalidDataException($"{source}:{alias.Start.Line}: YAML aliases are not read (*{Clip(alias.Value.Value)}); write the value out");
                case NodeEvent { Anchor.IsEmpty: false } node:
                    throw new InvalidDataException($"{source}:{node.Start.Line}: YAML anchors are not read (&{Clip(node.Anchor.Value)}); write the value out where it is used");
                case MappingStart or SequenceStart when ++depth > MaxYamlDepth:
                    throw new InvalidDataException($"{source}:{inner.Current.Start.Line}: mappings and lists nest more than {MaxYamlDepth} deep");
                case MappingEnd or SequenceEnd:
                    depth--;
                    break;
            }
            return true;
        }
    }

    private static JsonNode? ToJson(YamlNode node, string path, Dictionary<string, int> lines, string source)
    {
        lines.TryAdd(path, (int)node.Start.Line);
        switch (node)
        {
            case YamlMappingNode map:
                var obj = new JsonObject();
                foreach (var (k, v) in map.Children)
                {
                    if (k is not YamlScalarNode { Value: { } key })
                        throw new InvalidDataException($"{source}:{k.Start.Line}: keys must be plain names");
                    string at = path.Length == 0 ? key : $"{path}.{key}";
                    lines[at] = (int)k.Start.Line;
                    if (obj.ContainsKey(key)) throw new InvalidDataException($"{source}:{k.Start.Line}: key '{at}' appears twice");
                    obj[key] = ToJson(v, at, lines, source);
                }
                return obj;
            case YamlSequenceNode seq:
                var array = new JsonArray();
                int i = 0;
                foreach (var item in seq.Children) array.Add(ToJson(item, $"{path}[{i++}]", lines, source));
                return array;
            case YamlScalarNode scalar:
                return scalar.Style is ScalarStyle.Plain or ScalarStyle.Any ? PlainScalar(scalar.Value ?? "") : JsonValue.Create(scalar.Value ?? "");
            default:
                throw new InvalidDataException($"{source}:{node.Start.Line}: unsupported YAML node ({node.NodeType})");
        }
    }

    [GeneratedRegex(@"^[-+]?[0-9]+$")]
    private static partial Regex IntegerPattern();

    [GeneratedRegex(@"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")]
    private static partial Regex FloatPattern();

    [GeneratedRegex(@"^[A-Za-z0-9_./\-][A-Za-z0-9_./\-+ ,()§'’√=·…]*$")]
    private static partial Regex SafePlain();

    private static JsonNode? PlainScalar(string text) => text switch
    {
        "" or "~" or "null" or "Null" or "NULL" => null,
        "true" or "True" or "TRUE" => JsonValue.Create(true),
        "false" or "False" or "FALSE" => JsonValue.Create(false),
        _ when IntegerPattern().IsMatch(text) && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l) => JsonValue.Create(l),
        _ when FloatPattern().IsMatch(text) => JsonValue.Create(double.Parse(text, CultureInfo.InvariantCulture)),
        _ => JsonValue.Create(text),
    };

    public static string ToJson(RunConfig config) => JsonSerializer.Serialize(config, Json);

    public static string ToYaml(RunConfig config)
    {
        var root = (YamlMappingNode)ToYaml(JsonSerializer.SerializeToNode(config, Json)!);
        var writer = new StringWriter { NewLine = "\n" };
        new YamlStream(new YamlDocument(root)).Save(writer, assignAnchors: false);
        string text = writer.ToString();
        // The emitter closes the document with "...": one configuration per file needs no end marker.
        return text.EndsWith("...\n", StringComparison.Ordinal) ? text[..^4] : text;
    }

    private static YamlNode ToYaml(JsonNode? node)
    {
        switch (node)
        {
            case null:
                return new YamlScalarNode("null") { Style = ScalarStyle.Plain };
            case JsonObject obj:
                var map = new YamlMappingNode();
                foreach (var (k, v) in obj) map.Add(new YamlScalarNode(k), ToYaml(v));
                return map;
            case JsonArray array:
                var seq = new YamlSequenceNode(array.Select(ToYaml));
                if (array.Count == 0) seq.Style = YamlDotNet.Core.Events.SequenceStyle.Flow;
                return seq;
            default:
                var value = (JsonValue)node;
                if (value.GetValueKind() != JsonValueKind.String) return new YamlScalarNode(value.ToJsonString()) { Style = ScalarStyle.Plain };
                string text = value.GetValue<string>();
                // Plain when it reads back as the same text; quoted otherwise ("1", "true", "null", "a: b").
                bool plain = SafePlain().IsMatch(text) && PlainScalar(text) is JsonValue back && back.GetValueKind() == JsonValueKind.String
                    && !text.EndsWith(' ') && !text.Contains(" #", StringComparison.Ordinal);
                return new YamlScalarNode(text) { Style = plain ? ScalarStyle.Plain : ScalarStyle.DoubleQuoted };
        }
    }
}
