using Rama.Testing;
using Xunit.Abstractions;

namespace Rama.IntegrationTests;

/// <summary>
/// 1 GiB through the node keeps its memory flat. The bound: the node's resident-set high-water mark
/// may grow by at most 48 MiB during the transfer. A tunnel holds at most 64 KiB per pipe direction
/// (4 pipes: 256 KiB) plus one pooled read buffer per hop; the rest of the allowance is GC and JIT
/// noise. A proxy that buffered the body would grow by about the file size (1 GiB), so the bound
/// separates "streamed" from "buffered" by a factor of 20.
/// </summary>
public sealed class MemoryTests(ITestOutputHelper output)
{
    private const long OneGiB = 1L << 30;
    private const long AllowedGrowth = 48L << 20;

    [Theory]
    [InlineData("absolute-form")]
    [InlineData("connect")]
    public async Task One_GiB_download_keeps_node_memory_flat(string mode)
    {
        await using var origin = await KestrelOrigin.StartAsync();
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0"]);
        string[] tunnel = mode == "connect" ? ["-p"] : [];
        var proxy = $"http://127.0.0.1:{node.Endpoint.Port}";

        // Warm up (JIT, pools) with a small transfer, then take the baseline high-water mark.
        var warm = await Cli.CurlAsync([.. tunnel, "-o", "/dev/null", "-x", proxy, origin.Url("/bytes/1048576")]);
        Assert.Equal(0, warm.ExitCode);
        var before = node.Memory();

        var started = DateTime.UtcNow;
        var result = await Cli.RunAsync("curl", ["-sS", "--max-time", "120", .. tunnel, "-o", "/dev/null", "-w", "%{size_download}", "-x", proxy, origin.Url($"/bytes/{OneGiB}")], TimeSpan.FromSeconds(150));
        var elapsed = DateTime.UtcNow - started;
        var after = node.Memory();
        output.WriteLine($"{mode}: {OneGiB / elapsed.TotalSeconds / (1 << 20):0} MiB/s, RSS before {before.Rss >> 20} MiB (peak {before.Peak >> 20}), after {after.Rss >> 20} MiB (peak {after.Peak >> 20})");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(Formats.Invariant(OneGiB), result.Text);
        Assert.True(after.Peak - before.Peak < AllowedGrowth,
            $"peak RSS grew by {(after.Peak - before.Peak) >> 20} MiB during a 1 GiB {mode} transfer (bound {AllowedGrowth >> 20} MiB)");
    }
}
