using System.Buffers;
using System.IO.Pipelines;
using System.Text;

namespace Rama.Proxy.Http;

/// <summary>Writes HTTP/1.1 heads and bodies (RFC 9112) into a <see cref="PipeWriter"/>; callers flush.</summary>
internal static class Http1Writer
{
    /// <summary><c>method SP request-target SP HTTP/1.1 CRLF</c> then the fields in order, then CRLF (RFC 9112 §3).</summary>
    public static void WriteRequestHead(PipeWriter output, string method, string target, HttpHeaders headers)
    {
        WriteLatin1(output, method);
        output.Write(" "u8);
        WriteLatin1(output, target);
        output.Write(" HTTP/1.1\r\n"u8);
        WriteFields(output, headers);
        output.Write("\r\n"u8);
    }

    /// <summary>The status line (RFC 9112 §4): always HTTP/1.1, our version (RFC 9110 §6.2).</summary>
    public static void WriteStatusLine(IBufferWriter<byte> output, int status, string? reason)
    {
        output.Write("HTTP/1.1 "u8);
        WriteNumber(output, status);
        output.Write(" "u8);
        WriteLatin1(output, reason ?? ReasonPhrases.For(status));
        output.Write("\r\n"u8);
    }

    public static void WriteFields(PipeWriter output, HttpHeaders headers)
    {
        foreach (var field in headers)
        {
            WriteField(output, field.Name.Span, field.Value.Span);
        }
    }

    public static void WriteField(IBufferWriter<byte> output, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        output.Write(name);
        output.Write(": "u8);
        output.Write(value);
        output.Write("\r\n"u8);
    }

    public static void WriteNumber(IBufferWriter<byte> output, long value, string? format = null)
    {
        var span = output.GetSpan(20);
        if (!value.TryFormat(span, out var written, format, System.Globalization.CultureInfo.InvariantCulture))
        {
            throw new InvalidOperationException("a number did not fit 20 bytes");
        }

        output.Advance(written);
    }

    public static void WriteLatin1(IBufferWriter<byte> output, string text)
    {
        var span = output.GetSpan(text.Length);
        output.Advance(Encoding.Latin1.GetBytes(text, span));
    }

    /// <summary>One chunk (RFC 9112 §7.1): <c>hex-size CRLF data CRLF</c>; an empty buffer writes nothing (a 0 chunk would end the body).</summary>
    public static void WriteChunk(PipeWriter output, in ReadOnlySequence<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        WriteNumber(output, data.Length, "x");
        output.Write("\r\n"u8);
        foreach (var segment in data)
        {
            output.Write(segment.Span);
        }

        output.Write("\r\n"u8);
    }

    /// <summary>
    /// The last chunk and the trailer section (RFC 9112 §7.1, §7.1.2): the fields of <paramref name="trailers"/> that may be
    /// trailers (<see cref="HttpForwardRules.MayBeTrailer"/>; RFC 9110 §6.5.1), or none.
    /// </summary>
    public static void WriteLastChunk(PipeWriter output, HttpHeaders? trailers = null)
    {
        output.Write("0\r\n"u8);
        if (trailers is not null)
        {
            foreach (var field in trailers)
            {
                if (HttpForwardRules.MayBeTrailer(field))
                {
                    WriteField(output, field.Name.Span, field.Value.Span);
                }
            }
        }

        output.Write("\r\n"u8);
    }

    /// <summary>
    /// Streams <paramref name="body"/> to <paramref name="output"/>, one read at a time, flushing each
    /// (back-pressure: memory stays within the pipes' limits). Chunked re-encodes each read as one
    /// chunk, and its last chunk carries the fields <paramref name="trailers"/> gives once the body has ended (RFC 9112 §7.1.2); a
    /// known length stops there and fails if the body ends early (trailers cannot go there). Returns body bytes written.
    /// </summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    public static async ValueTask<long> CopyBodyAsync(PipeReader body, PipeWriter output, bool chunked, long length, CancellationToken cancellationToken,
        Func<HttpHeaders?>? trailers = null)
    {
        long total = 0;
        while (true)
        {
            var result = await body.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (length >= 0 && buffer.Length > length - total)
            {
                buffer = buffer.Slice(0, length - total);
            }

            if (chunked)
            {
                WriteChunk(output, buffer);
            }
            else
            {
                foreach (var segment in buffer)
                {
                    output.Write(segment.Span);
                }
            }

            total += buffer.Length;
            body.AdvanceTo(buffer.End);
            var done = result.IsCompleted || (length >= 0 && total == length);
            if (done && chunked)
            {
                WriteLastChunk(output, trailers?.Invoke());
            }

            if (result.IsCanceled)
            {
                throw new OperationCanceledException("body read cancelled");
            }

            var flush = await output.FlushAsync(cancellationToken).ConfigureAwait(false);
            if (flush.IsCompleted && !done)
            {
                throw new IOException("the peer stopped reading");
            }

            if (done)
            {
                if (length >= 0 && total < length)
                {
                    throw new IOException($"body ended after {total} of {length} bytes");
                }

                return total;
            }
        }
    }
}

/// <summary>RFC 9110 §15 reason phrases.</summary>
public static class ReasonPhrases
{
    public static string For(int status) => status switch
    {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    };
}
