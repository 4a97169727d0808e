using System.Buffers;
using FsCheck;
using FsCheck.Fluent;
using Rama.Proxy.Socks5;
using Rama.Proxy.Tests.Support;

namespace Rama.Proxy.Tests.Socks5;

public sealed class Socks5ProtocolTests
{
    public static TheoryData<byte[], string, int> ValidRequests => new()
    {
        { [5, 1, 0, 1, 127, 0, 0, 1, 0x1F, 0x90], "127.0.0.1", 8080 },
        { [5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80], "::1", 80 },
        { [5, 1, 0, 3, 9, (byte)'l', (byte)'o', (byte)'c', (byte)'a', (byte)'l', (byte)'h', (byte)'o', (byte)'s', (byte)'t', 1, 0xBB], "localhost", 443 },
    };

    [Theory]
    [MemberData(nameof(ValidRequests))]
    public void Request_parses_the_same_whole_and_one_byte_per_segment(byte[] bytes, string host, int port)
    {
        foreach (var input in new[] { new ReadOnlySequence<byte>(bytes), Sequences.OneBytePerSegment(bytes) })
        {
            Assert.Equal(Socks5ParseStatus.Done, Socks5Protocol.TryParseRequest(input, out var consumed, out var request));
            Assert.Equal(bytes.Length, input.Slice(input.Start, consumed).Length);
            Assert.Equal(Socks5Command.Connect, request.Command);
            Assert.Equal(host, request.Target.Host);
            Assert.Equal(port, request.Target.Port);
        }
    }

    [Theory]
    [MemberData(nameof(ValidRequests))]
    public void Every_prefix_of_a_request_needs_more(byte[] bytes, string host, int port)
    {
        _ = host;
        _ = port;
        for (var length = 0; length < bytes.Length; length++)
        {
            Assert.Equal(Socks5ParseStatus.NeedMore, Socks5Protocol.TryParseRequest(Sequences.OneBytePerSegment(bytes[..length]), out _, out _));
        }
    }

    public static TheoryData<byte[], Socks5ParseStatus> BadRequests => new()
    {
        { [4, 1, 0, 1, 127, 0, 0, 1, 0, 80], Socks5ParseStatus.BadVersion },
        { [5, 1, 1, 1, 127, 0, 0, 1, 0, 80], Socks5ParseStatus.Malformed },            // RSV must be 0
        { [5, 1, 0, 9, 127, 0, 0, 1, 0, 80], Socks5ParseStatus.UnsupportedAddressType },
        { [5, 1, 0, 3, 0, 0, 80], Socks5ParseStatus.Malformed },                        // empty domain
        { [5, 1, 0, 3, 3, (byte)'a', (byte)' ', (byte)'b', 0, 80], Socks5ParseStatus.Malformed }, // not a host name
        { [5, 1, 0, 1, 127, 0, 0, 1, 0, 0], Socks5ParseStatus.Malformed },            // CONNECT to port 0
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public void Bad_requests_are_rejected_with_their_reason(byte[] bytes, Socks5ParseStatus expected)
    {
        Assert.Equal(expected, Socks5Protocol.TryParseRequest(new ReadOnlySequence<byte>(bytes), out _, out _));
        Assert.Equal(expected, Socks5Protocol.TryParseRequest(Sequences.OneBytePerSegment(bytes), out _, out _));
    }

    [Fact]
    public void Greeting_and_userpass_parse_one_byte_per_segment()
    {
        byte[] greeting = [5, 2, 0, 2];
        Assert.Equal(Socks5ParseStatus.Done, Socks5Protocol.TryParseGreeting(Sequences.OneBytePerSegment(greeting), out _, out var methods));
        Assert.Equal(new byte[] { 0, 2 }, methods);
        Assert.Equal(Socks5ParseStatus.BadVersion, Socks5Protocol.TryParseGreeting(new ReadOnlySequence<byte>([4, 1, 0]), out _, out _));
        Assert.Equal(Socks5ParseStatus.Malformed, Socks5Protocol.TryParseGreeting(new ReadOnlySequence<byte>([5, 0]), out _, out _));
        Assert.Equal(Socks5ParseStatus.NeedMore, Socks5Protocol.TryParseGreeting(new ReadOnlySequence<byte>([5, 3, 0]), out _, out _));

        byte[] auth = [1, 4, (byte)'j', (byte)'o', (byte)'h', (byte)'n', 2, (byte)'p', (byte)'w'];
        Assert.Equal(Socks5ParseStatus.Done, Socks5Protocol.TryParseUserPass(Sequences.OneBytePerSegment(auth), out _, out var user, out var password));
        Assert.Equal(("john", "pw"), (user, password));
        Assert.Equal(Socks5ParseStatus.NeedMore, Socks5Protocol.TryParseUserPass(new ReadOnlySequence<byte>(auth[..^1]), out _, out _, out _));
        Assert.Equal(Socks5ParseStatus.BadVersion, Socks5Protocol.TryParseUserPass(new ReadOnlySequence<byte>([5, 1, (byte)'a', 0]), out _, out _, out _));
    }

    [Fact]
    public void Random_input_never_throws_and_never_claims_more_than_it_was_given()
    {
        Prop.ForAll<byte[]>(bytes =>
        {
            bytes ??= [];
            foreach (var input in new[] { new ReadOnlySequence<byte>(bytes), Sequences.OneBytePerSegment(bytes) })
            {
                if (Socks5Protocol.TryParseRequest(input, out var consumed, out _) == Socks5ParseStatus.Done && input.Slice(input.Start, consumed).Length > bytes.Length)
                {
                    return false;
                }

                Socks5Protocol.TryParseGreeting(input, out _, out _);
                Socks5Protocol.TryParseUserPass(input, out _, out _, out _);
            }

            return true;
        }).QuickCheckThrowOnFailure();

        // Mutations of a valid request: flip one byte anywhere.
        byte[] valid = [5, 1, 0, 3, 9, (byte)'l', (byte)'o', (byte)'c', (byte)'a', (byte)'l', (byte)'h', (byte)'o', (byte)'s', (byte)'t', 1, 0xBB];
        Prop.ForAll<int, byte>((index, value) =>
        {
            var copy = (byte[])valid.Clone();
            copy[Math.Abs(index % copy.Length)] = value;
            var status = Socks5Protocol.TryParseRequest(Sequences.OneBytePerSegment(copy), out _, out _);
            return Enum.IsDefined(status);
        }).QuickCheckThrowOnFailure();
    }
}
