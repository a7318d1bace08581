using System.Net;

namespace Transduce.Serving;

/// <summary>Parses and checks <c>--urls</c>: loopback only, unless the operator allows remote addresses explicitly.</summary>
public static class ListenAddresses
{
    /// <summary>The host names a loopback service answers by default (any port).</summary>
    public static readonly IReadOnlyList<string> LoopbackHosts = ["localhost", "127.0.0.1", "[::1]"];

    /// <summary>
    /// Parses <paramref name="urls"/> (separated by <c>;</c> or <c>,</c>) into endpoints. Only <c>http</c> addresses with
    /// no path are accepted; port 0 picks a free port. Without <paramref name="allowRemote"/> only the loopback
    /// interface (<c>127.0.0.0/8</c>, <c>[::1]</c>, <c>localhost</c>) is accepted; with it also any IP address, and
    /// <c>*</c> or <c>+</c> for every interface (IPv6 and IPv4). Host names other than <c>localhost</c> are refused
    /// (a listener binds addresses, not names). Throws <see cref="ArgumentException"/> naming the first address refused.
    /// </summary>
    public static IReadOnlyList<IPEndPoint> Parse(string urls, bool allowRemote)
    {
        var endpoints = new List<IPEndPoint>();
        foreach (string raw in urls.Split([';', ','], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            // Uri does not parse "*" or "+" as a host: read them by hand.
            string text = raw;
            bool wildcard = false;
            foreach (string any in new[] { "http://*:", "http://+:" })
                if (raw.StartsWith(any, StringComparison.OrdinalIgnoreCase))
                {
                    text = "http://0.0.0.0:" + raw[any.Length..];
                    wildcard = true;
                }
            if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp || uri.AbsolutePath != "/"
                || !string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.UserInfo))
                throw new ArgumentException($"--urls: '{raw}' is not an address like http://127.0.0.1:5080 (plain HTTP; put TLS in a reverse proxy)");
            IPAddress address;
            if (uri.IsLoopback && uri.HostNameType == UriHostNameType.Dns) address = IPAddress.Loopback;   // localhost
            else if (!IPAddress.TryParse(uri.Host.Trim('[', ']'), out address!))
                throw new ArgumentException(allowRemote
                    ? $"--urls: '{raw}' names a host; give an IP address, or * for every interface"
                    : $"--urls: '{raw}' is not a loopback address; transduce serve listens on 127.0.0.1 or [::1] only, unless --allow-remote is given");
            if (wildcard) address = IPAddress.IPv6Any;   // Kestrel makes an IPv6-any socket dual-mode: IPv4 too
            if (!IPAddress.IsLoopback(address) && !allowRemote)
                throw new ArgumentException($"--urls: '{raw}' is not a loopback address; transduce serve listens on 127.0.0.1 or [::1] only, unless --allow-remote is given");
            endpoints.Add(new IPEndPoint(address, uri.Port));
        }
        if (endpoints.Count == 0) throw new ArgumentException("--urls: no address given");
        return endpoints;
    }

    /// <summary>Whether every endpoint is on the loopback interface.</summary>
    public static bool AllLoopback(IEnumerable<IPEndPoint> endpoints) => endpoints.All(e => IPAddress.IsLoopback(e.Address));

    /// <summary>
    /// The <c>Host</c> header values to answer: <paramref name="configured"/> when given; else, for a loopback service
    /// (or one with no endpoints of its own, as under a test server), <see cref="LoopbackHosts"/> and the addresses
    /// bound; else any host.
    /// </summary>
    public static IReadOnlyList<string> AllowedHosts(IReadOnlyList<string>? configured, IReadOnlyList<IPEndPoint>? endpoints)
    {
        if (configured is not null) return configured;
        if (endpoints is not null && !AllLoopback(endpoints)) return ["*"];
        var hosts = new List<string>(LoopbackHosts);
        foreach (var e in endpoints ?? [])
        {
            string literal = e.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{e.Address}]" : e.Address.ToString();
            if (!hosts.Contains(literal, StringComparer.OrdinalIgnoreCase)) hosts.Add(literal);
        }
        return hosts;
    }
}
