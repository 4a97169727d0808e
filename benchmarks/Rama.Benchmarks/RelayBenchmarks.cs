using System.IO.Pipelines;
using BenchmarkDotNet.Attributes;
using Rama.Proxy.Net;

namespace Rama.Benchmarks;

/// <summary>
/// The relay loop (one direction of a tunnel) between in-memory pipes with the socket transport's
/// settings: 4 MiB pushed in 16 KiB writes and drained on the far side. Measures the copy loop's
/// overhead per MiB and its allocations (the pipes' segments are pooled).
/// </summary>
public class RelayBenchmarks
{
    private const int Write = 16 * 1024;
    private const int Total = 4 * 1024 * 1024;
    private readonly byte[] _chunk = new byte[Write];

    private static PipeOptions Options => new(pauseWriterThreshold: 64 * 1024, resumeWriterThreshold: 32 * 1024, minimumSegmentSize: 16 * 1024,
        readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false);

    [Benchmark(Description = "relay 4 MiB in 16 KiB writes", OperationsPerInvoke = Total / Write)]
    public async Task<long> Relay4MiB()
    {
        var from = new Pipe(Options);
        var to = new Pipe(Options);
        var relay = Relay.CopyAsync(from.Reader, to.Writer, CancellationToken.None);
        var drain = DrainAsync(to.Reader);
        for (var sent = 0; sent < Total; sent += Write)
        {
            await from.Writer.WriteAsync(_chunk);
        }

        await from.Writer.CompleteAsync();
        await relay;
        return await drain;
    }

    private static async Task<long> DrainAsync(PipeReader reader)
    {
        long total = 0;
        while (true)
        {
            var result = await reader.ReadAsync();
            total += result.Buffer.Length;
            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                await reader.CompleteAsync();
                return total;
            }
        }
    }
}
