using System.Text;
using FsCheck;
using FsCheck.Fluent;

namespace Rama.Proxy.Tests.Support;

/// <summary>Generators for the HTTP parser's property tests: bytes weighted towards what heads are made of, and mutated messages.</summary>
internal static class HttpPropertyGen
{
    private static readonly byte[] Interesting = Encoding.Latin1.GetBytes("\r\n\r\n :\t;/GETPOSThttp1.0HTTP/1.1Host0123456789abcdefchunkedTransfer-EncodingContent-Length,\x00\x7f\xff");

    /// <summary>Mostly the bytes of HTTP syntax, sometimes any byte.</summary>
    public static Gen<byte> Bytes =>
        Gen.Frequency((3, Gen.Elements(Interesting)), (1, Gen.Choose(0, 255).Select(i => (byte)i)));

    /// <summary><paramref name="text"/> with bytes overwritten (positions modulo its length), then cut (modulo its length + 1).</summary>
    public static byte[] Mutate(string text, IEnumerable<(int, byte)> mutations, int cut)
    {
        var bytes = Encoding.Latin1.GetBytes(text);
        foreach (var (at, value) in mutations)
        {
            bytes[at % bytes.Length] = value;
        }

        return bytes[..(cut % (bytes.Length + 1))];
    }
}
