using System.IO.Pipelines;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Rama.Proxy.Http;
using Rama.Proxy.Tests.Support;

namespace Rama.Proxy.Tests.Http;

/// <summary>Property tests: garbage and mutated requests never crash the parser or make it loop.</summary>
public class ParserPropertyTests
{
    private static readonly HttpLimits Limits = new() { MaxRequestLineBytes = 256, MaxHeaderBytes = 512, MaxHeaderCount = 10 };

    private static readonly string[] ValidRequests =
    [
        "GET http://h:1/p HTTP/1.1\r\nHost: h:1\r\nA: b\r\n\r\n",
        "POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
    ];

    [Fact]
    public void Random_bytes_give_a_result_need_more_or_a_rejection()
    {
        var arb = Gen.ArrayOf(HttpPropertyGen.Bytes).ToArbitrary();
        Prop.ForAll(arb, bytes => ParseIsTotal(bytes)).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Mutated_valid_requests_give_a_result_need_more_or_a_rejection()
    {
        var gen =
            from request in Gen.Elements(ValidRequests)
            from mutations in Gen.ListOf(Gen.Zip(Gen.Choose(0, 1000), HttpPropertyGen.Bytes), 3)
            from cut in Gen.Choose(0, 1000)
            select HttpPropertyGen.Mutate(request, mutations, cut);
        Prop.ForAll(gen.ToArbitrary(), bytes => ParseIsTotal(bytes)).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Random_chunked_bodies_decode_or_are_rejected_and_never_loop()
    {
        var gen =
            from chunks in Gen.ListOf(Gen.Elements("5\r\nhello\r\n", "0\r\n\r\n", "a;x=y\r\n0123456789\r\n", "\r\n", "1\r\n", "z", "0\r\nT: v\r\n"))
            from garbage in Gen.ArrayOf(HttpPropertyGen.Bytes, 4)
            select Encoding.Latin1.GetBytes(string.Concat(chunks)).Concat(garbage).ToArray();
        Prop.ForAll(gen.ToArbitrary(), bytes => BodyDecodeIsTotal(bytes)).QuickCheckThrowOnFailure();
    }

    private static bool ParseIsTotal(byte[] bytes)
    {
        foreach (var buffer in new[] { Sequences.Whole(bytes), Sequences.OneBytePerSegment(bytes) })
        {
            try
            {
                if (Http1Parser.TryParseRequest(buffer, Limits, out var request, out var consumed))
                {
                    if (request is null || buffer.Slice(0, consumed).Length == 0)
                    {
                        return false;
                    }
                }

                Http1Parser.TryParseResponse(buffer, Limits, "GET", out _, out _);
            }
            catch (HttpCodecException)
            {
            }
        }

        return true;
    }

    private static bool BodyDecodeIsTotal(byte[] bytes)
    {
        try
        {
            var body = new Http1BodyReader(PipeReader.Create(Sequences.OneBytePerSegment(bytes)), BodyFraming.Chunked, -1, Limits);
            for (var reads = 0; reads <= bytes.Length + 2; reads++)
            {
                var task = body.ReadAsync();
                if (!task.IsCompleted)
                {
                    return false; // a completed input must never leave a read pending
                }

                var result = task.Result;
                body.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    return true;
                }
            }

            return false; // more reads than bytes: looping
        }
        catch (HttpCodecException)
        {
            return true;
        }
    }
}
