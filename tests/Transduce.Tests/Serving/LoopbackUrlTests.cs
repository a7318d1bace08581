using System.Net;
using Transduce.Serving;

namespace Transduce.Tests.Serving;

/// <summary><c>--urls</c> accepts loopback http addresses only.</summary>
public sealed class LoopbackUrlTests
{
    [Fact]
    public void LoopbackAddressesAreAccepted()
    {
        var endpoints = ServingApp.ParseLoopbackUrls("http://127.0.0.1:5080; http://[::1]:5081,http://localhost:0 ;http://127.0.0.2:80");
        Assert.Equal(
            [new IPEndPoint(IPAddress.Loopback, 5080), new IPEndPoint(IPAddress.IPv6Loopback, 5081), new IPEndPoint(IPAddress.Loopback, 0), new IPEndPoint(IPAddress.Parse("127.0.0.2"), 80)],
            endpoints);
    }

    [Theory]
    [InlineData("http://0.0.0.0:5080", "not a loopback address")]
    [InlineData("http://192.168.1.10:5080", "not a loopback address")]
    [InlineData("http://[::]:5080", "not a loopback address")]
    [InlineData("http://example.org:5080", "not a loopback address")]
    [InlineData("http://*:5080", "not a loopback address")]
    [InlineData("http://+:5080", "not a loopback address")]
    [InlineData("https://127.0.0.1:5443", "not an address")]
    [InlineData("127.0.0.1:5080", "not an address")]
    [InlineData("http://127.0.0.1:5080/api", "not an address")]
    [InlineData(" ; ", "no address")]
    public void OtherAddressesAreRefused(string urls, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => ServingApp.ParseLoopbackUrls(urls));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void RemoteAddressesAreAcceptedWhenAllowed()
    {
        var endpoints = ListenAddresses.Parse("http://0.0.0.0:5080;http://[::]:5081;http://*:5082;http://+:5083;http://192.168.1.10:80;http://127.0.0.1:9", allowRemote: true);
        Assert.Equal(
            [new IPEndPoint(IPAddress.Any, 5080), new IPEndPoint(IPAddress.IPv6Any, 5081), new IPEndPoint(IPAddress.IPv6Any, 5082),
             new IPEndPoint(IPAddress.IPv6Any, 5083), new IPEndPoint(IPAddress.Parse("192.168.1.10"), 80), new IPEndPoint(IPAddress.Loopback, 9)],
            endpoints);
        Assert.False(ListenAddresses.AllLoopback(endpoints));
        var e = Assert.Throws<ArgumentException>(() => ListenAddresses.Parse("http://example.org:80", allowRemote: true));
        Assert.Contains("names a host; give an IP address", e.Message);
        e = Assert.Throws<ArgumentException>(() => ListenAddresses.Parse("https://0.0.0.0:443", allowRemote: true));
        Assert.Contains("TLS", e.Message);
    }

    [Fact]
    public void ServeRefusesANonLoopbackAddressWithOneClearLine()
    {
        var r = Transduce.Tests.Cli.CliTests.Run(null, "serve", "--model", "/nonexistent", "--urls", "http://0.0.0.0:5080");
        Assert.Equal(1, r.Code);
        Assert.Contains("not a loopback address", r.Err);
        Assert.DoesNotContain("   at ", r.Err);

        // A limit out of range is a usage error (exit 2), said before the model is looked for.
        r = Transduce.Tests.Cli.CliTests.Run(null, "serve", "--model", "/nonexistent", "--max-batch", "0");
        Assert.Equal(2, r.Code);
        Assert.StartsWith("error: --max-batch must be positive (got 0)", r.Err);
    }
}
