using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Rama.Admin.Logging;

namespace Rama.Admin.Tests.Logging;

/// <summary>
/// The node's and the lighthouse's console logger: the simple console format operators and tests read (one line per
/// entry, "HH:mm:ss.fff info: Category[id] message"), the Logging:Console configuration honoured, and the lines written
/// whole, in order, in batches, with bounded memory.
/// </summary>
public sealed partial class BatchedConsoleLoggerTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public void Lines_have_the_simple_console_format_on_one_line_with_the_exception()
    {
        var output = new RecordingStream();
        using (var services = Services(output))
        {
            var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Proxy.Fingerprint");
            logger.LogInformation(new EventId(7200), "GET /1k ja3={Ja3}", "47b46b31");
            logger.LogWarning(new EventId(12), "two\nlines");
            logger.LogError(new EventId(13), new InvalidOperationException("boom"), "failed");
            logger.LogDebug("below the level: not written");
        }

        var lines = output.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.Matches(@"^\d\d:\d\d:\d\d\.\d{3} info: Rama\.Proxy\.Fingerprint\[7200\] GET /1k ja3=47b46b31$", lines[0]);
        Assert.Matches(@"^\d\d:\d\d:\d\d\.\d{3} warn: Rama\.Proxy\.Fingerprint\[12\] two lines$", lines[1]);
        Assert.Matches(@"^\d\d:\d\d:\d\d\.\d{3} fail: Rama\.Proxy\.Fingerprint\[13\] failed System\.InvalidOperationException: boom$", lines[2]);
    }

    [Fact]
    public void The_console_configuration_chooses_the_formatter_and_the_levels()
    {
        var output = new RecordingStream();
        using (var services = Services(output, new()
        {
            ["Logging:Console:FormatterName"] = "json",
            ["Logging:Console:LogLevel:Noisy"] = "Warning",
        }))
        {
            var factory = services.GetRequiredService<ILoggerFactory>();
            factory.CreateLogger("Noisy").LogInformation("filtered by the Console provider's own level");
            factory.CreateLogger("Rama.Node").LogInformation(new EventId(5), "node {State}", "up");
        }

        var line = Assert.Single(output.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        using var json = JsonDocument.Parse(line);
        Assert.Equal("Rama.Node", json.RootElement.GetProperty("Category").GetString());
        Assert.Equal("node up", json.RootElement.GetProperty("Message").GetString());
        Assert.Equal(5, json.RootElement.GetProperty("EventId").GetInt32());
    }

    [Fact]
    public async Task Lines_logged_together_from_many_threads_are_written_whole_in_order_per_thread_and_in_few_writes()
    {
        var output = new RecordingStream();
        const int Threads = 4;
        const int PerThread = 5_000;
        using (var services = Services(output))
        {
            var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Proxy.Access");
            await Task.WhenAll(Enumerable.Range(0, Threads).Select(t => Task.Run(() =>
            {
                for (var i = 0; i < PerThread; i++)
                {
                    logger.LogInformation("thread {Thread} line {Line} {Padding}", t, i, new string('x', 100));
                }
            })));
        }

        var lines = output.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(Threads * PerThread, lines.Length);
        var next = new int[Threads];
        foreach (var line in lines)
        {
            var match = LinePattern().Match(line);
            Assert.True(match.Success, "a line was split or mixed: " + line);
            var thread = int.Parse(match.Groups[1].Value);
            Assert.Equal(next[thread]++, int.Parse(match.Groups[2].Value));
        }

        // The console logger wrote each line with its own write; batching writes many per syscall.
        Assert.True(output.Writes < lines.Length / 10, $"{output.Writes} writes for {lines.Length} lines");
    }

    [Fact]
    public void A_line_logged_while_idle_is_written_promptly_without_a_flush()
    {
        var output = new RecordingStream();
        using var services = Services(output);
        services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Node").LogInformation("listening");
        Assert.True(SpinWait.SpinUntil(() => output.Text.Contains("listening", StringComparison.Ordinal), Wait));
    }

    [Fact]
    public async Task A_stream_that_does_not_take_lines_holds_writers_at_the_bound_and_drop_mode_drops_and_counts()
    {
        using var gate = new ManualResetEventSlim(false);
        var blocked = new RecordingStream(gate);
        using var sink = new ConsoleLineSink(blocked);
        var line = new string('a', 1023) + "\n";
        sink.Append(line); // the writer takes this one and blocks in the stream
        Assert.True(SpinWait.SpinUntil(() => blocked.Entered, Wait));
        var appended = 0;
        var writer = Task.Run(() =>
        {
            for (var i = 0; i < 2_000; i++)
            {
                sink.Append(line);
                Interlocked.Increment(ref appended);
            }
        });

        // 2,000 lines of 1 KiB do not fit in the 1 MiB the sink holds: the writer waits at the bound.
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref appended) >= ConsoleLineSink.MaxBufferedBytes / 1024 - 1, Wait));
        // A negative (the writer stays held), so there is no condition to wait on: 200 ms is far past what the remaining
        // ~1,000 appends take when nothing holds them (microseconds each).
        Assert.NotSame(writer, await Task.WhenAny(writer, Task.Delay(200)));
        Assert.InRange(Volatile.Read(ref appended), ConsoleLineSink.MaxBufferedBytes / 1024 - 1, ConsoleLineSink.MaxBufferedBytes / 1024);
        gate.Set();
        await writer.WaitAsync(Wait);
        Assert.True(sink.Flush(Wait));
        Assert.Equal(2_001, blocked.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);

        using var gate2 = new ManualResetEventSlim(false);
        var blocked2 = new RecordingStream(gate2);
        using var dropping = new ConsoleLineSink(blocked2, dropWhenFull: true);
        dropping.Append(line);
        Assert.True(SpinWait.SpinUntil(() => blocked2.Entered, Wait));
        for (var i = 0; i < 2_000; i++)
        {
            dropping.Append(line); // never blocks
        }

        Assert.InRange(dropping.Dropped, 2_000 - ConsoleLineSink.MaxBufferedBytes / 1024, 2_000 - ConsoleLineSink.MaxBufferedBytes / 1024 + 1);
        gate2.Set();
    }

    [Fact]
    public void A_closed_output_never_throws_at_the_caller_and_a_line_after_disposal_is_written_at_once()
    {
        var closed = new RecordingStream { FailWrites = true };
        using (var sink = new ConsoleLineSink(closed))
        {
            sink.Append("first\n");
            Assert.True(SpinWait.SpinUntil(() => sink.Broken, Wait));
            sink.Append("second\n");
            Assert.True(sink.Flush(Wait));
        }

        var output = new RecordingStream();
        var late = new ConsoleLineSink(output);
        late.Dispose();
        late.Append("Rama node stopped\n");
        Assert.Equal("Rama node stopped\n", output.Text);
    }

    private static ServiceProvider Services(RecordingStream output, Dictionary<string, string?>? settings = null)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings ?? []).Build();
        var services = new ServiceCollection();
        services.AddSingleton(new ConsoleStreams(output, new RecordingStream()));
        services.AddLogging(logging =>
        {
            logging.AddConfiguration(configuration.GetSection("Logging"));
            logging.AddRamaConsole();
        });
        return services.BuildServiceProvider();
    }

    [GeneratedRegex(@"^\d\d:\d\d:\d\d\.\d{3} info: Rama\.Proxy\.Access\[0\] thread (\d) line (\d+) x{100}$")]
    private static partial Regex LinePattern();

    /// <summary>Records what is written and how many writes it took; optionally blocks each write until a gate opens, or fails them.</summary>
    private sealed class RecordingStream(ManualResetEventSlim? gate = null) : Stream
    {
        private readonly MemoryStream _bytes = new();
        private int _writes;
        private volatile bool _entered;

        public bool FailWrites { get; init; }

        public bool Entered => _entered;

        public int Writes => Volatile.Read(ref _writes);

        public string Text
        {
            get
            {
                lock (_bytes)
                {
                    return Encoding.UTF8.GetString(_bytes.ToArray());
                }
            }
        }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Write(byte[] buffer, int offset, int count)
        {
            _entered = true;
            gate?.Wait(); // blocks the sink's own writer thread on purpose: a stdout that does not take what is written
            if (FailWrites)
            {
                throw new IOException("Broken pipe");
            }

            Interlocked.Increment(ref _writes);
            lock (_bytes)
            {
                _bytes.Write(buffer, offset, count);
            }
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
