using System.IO.Pipelines;

namespace Rama.Proxy.Http;

/// <summary>Reads an upstream's final response head from a pipe (shared by every client side: forwarder, CONNECT client, TLS origin forwarder).</summary>
internal static class Http1ResponseReader
{
    /// <summary>
    /// The final (non-1xx) response head, consumed from <paramref name="input"/>; interim 1xx answers
    /// are skipped (RFC 9110 §15.2: they are not relayed). Null when the upstream closed before sending
    /// a byte; <see cref="HttpCodecException"/> for a malformed head or one cut short
    /// (<see cref="HttpRejectReason.UnexpectedEndOfBody"/>). A 101 is rejected when
    /// <paramref name="rejectSwitchingProtocols"/>: we never ask for an upgrade, so one is a protocol error.
    /// </summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    public static async ValueTask<ResponseHead?> ReadFinalHeadAsync(PipeReader input, HttpLimits limits, string requestMethod,
        bool rejectSwitchingProtocols, CancellationToken cancellationToken)
    {
        var state = default(HeadScanState);
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            bool parsed;
            ResponseHead? head;
            SequencePosition consumed;
            try
            {
                parsed = Http1Parser.TryParseResponse(buffer, limits, ref state, requestMethod, out head, out consumed);
            }
            catch
            {
                input.AdvanceTo(buffer.Start, buffer.End);
                throw;
            }

            if (parsed)
            {
                input.AdvanceTo(consumed);
                if (head!.Status == 101 && rejectSwitchingProtocols)
                {
                    HttpRejection.Throw(HttpRejectReason.InvalidStatusLine);
                }

                if (head.IsInterim && head.Status != 101)
                {
                    state = default;
                    continue;
                }

                return head;
            }

            input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
            {
                return buffer.IsEmpty ? null : HttpRejection.Throw<ResponseHead>(HttpRejectReason.UnexpectedEndOfBody);
            }
        }
    }
}
