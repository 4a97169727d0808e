using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Remote.Transport;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Rama.Admin.Cluster.Transport;
using Rama.Testing;

namespace Rama.Admin.Tests.Cluster;

/// <summary>One association over a real loopback socket, against a raw peer that reads and writes frames by hand.</summary>
public sealed class FleetAssociationTests : IAsyncLifetime
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);
    private static readonly Address Local = new("tcp", "rama", "127.0.0.1", 1);
    private static readonly Address Remote = new("tcp", "rama", "127.0.0.1", 2);
    private readonly CapturedLog _log = new();
    private readonly Events _events = new();
    private Socket _ours = null!;
    private Socket _peer = null!;

    public async Task InitializeAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        _ours = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { SendBufferSize = 64 * 1024 };
        var accepting = listener.AcceptAsync();
        await _ours.ConnectAsync(listener.LocalEndPoint!);
        _peer = await accepting;
        _peer.ReceiveBufferSize = 64 * 1024;
    }

    public Task DisposeAsync()
    {
        _ours.Dispose();
        _peer.Dispose();
        return Task.CompletedTask;
    }

    private FleetAssociation Open(int highWaterMark = 4_000_000, int maximumFrame = 2_000_000)
    {
        var settings = new FleetTransportSettings
        {
            Hostname = "127.0.0.1",
            Port = 0,
            EnableSsl = false,
            MaximumFrameSize = maximumFrame,
            HandshakeTimeout = Wait,
            SendHighWaterMark = highWaterMark,
            WriteBatchSize = 64 * 1024,
            FlushWait = TimeSpan.FromSeconds(2),
        };
        var association = new FleetAssociation(Local, Remote, _ours, new NetworkStream(_ours, ownsSocket: true), settings, _log.CreateLogger("test"), _ => { });
        association.Start();
        association.ReadHandlerSource.SetResult(_events);
        return association;
    }

    [Fact]
    public async Task Frames_split_into_single_bytes_arrive_as_whole_payloads_in_order()
    {
        Open();
        var wire = new List<byte>();
        foreach (var text in new[] { "first", "second frame", "" , "third" })
        {
            var frame = new byte[4 + text.Length];
            BinaryPrimitives.WriteInt32LittleEndian(frame, text.Length);
            System.Text.Encoding.ASCII.GetBytes(text).CopyTo(frame, 4);
            wire.AddRange(frame);
        }

        foreach (var b in wire)
        {
            await _peer.SendAsync(new[] { b }, SocketFlags.None);
        }

        await Eventually.TrueAsync(() => _events.Payloads.Count == 3, Wait);
        Assert.Equal(["first", "second frame", "third"], _events.Payloads.Select(p => p.ToStringUtf8()));
    }

    [Fact]
    public async Task A_frame_over_the_limit_closes_the_association_with_a_log_line()
    {
        Open(maximumFrame: 1_000_000);
        var header = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(header, 3_000_000);
        await _peer.SendAsync(header, SocketFlags.None);

        await Eventually.TrueAsync(() => _events.Disassociated == 1, Wait);
        Assert.True(_log.Has(LogLevel.Warning, "a frame of 3000000 bytes is over the limit of 1000000 bytes"), string.Join("\n", _log.Entries));
        // The peer sees the close (end of stream or reset), and nothing was buffered for the oversized frame.
        var buffer = new byte[16];
        try
        {
            Assert.Equal(0, await _peer.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(Wait));
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
        }

        Assert.Empty(_events.Payloads);
    }

    [Fact]
    public async Task Write_answers_false_above_the_high_water_mark_while_the_peer_does_not_read_and_what_it_accepted_arrives_in_order()
    {
        var association = Open(highWaterMark: 256 * 1024);
        var payload = new byte[16 * 1024];
        var accepted = 0;
        var refused = false;
        for (var i = 0; i < 100_000 && !refused; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(payload, accepted);
            if (association.Write(ByteString.CopyFrom(payload)))
            {
                accepted++;
            }
            else
            {
                refused = true;
            }
        }

        Assert.True(refused, $"Write never answered false after {accepted} frames of 16 KB with the peer not reading");
        // Bounded: what the kernel buffers plus the high-water mark, not everything offered.
        Assert.InRange(accepted, 1, 2_000);

        // The peer reads: every accepted frame arrives once, in order; then writes are accepted again.
        var expected = 0;
        var reader = new byte[4 + payload.Length];
        while (expected < accepted)
        {
            await ReadExactlyAsync(reader);
            Assert.Equal(payload.Length, BinaryPrimitives.ReadInt32LittleEndian(reader));
            Assert.Equal(expected, BinaryPrimitives.ReadInt32LittleEndian(reader.AsSpan(4)));
            expected++;
        }

        Assert.True(association.Write(ByteString.CopyFromUtf8("again")));
    }

    private async Task ReadExactlyAsync(byte[] buffer)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await _peer.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None).AsTask().WaitAsync(Wait);
            Assert.NotEqual(0, n);
            read += n;
        }
    }

    private sealed class Events : IHandleEventListener
    {
        public ConcurrentQueue<ByteString> Payloads { get; } = new();

        public int Disassociated;

        public void Notify(IHandleEvent ev)
        {
            switch (ev)
            {
                case InboundPayload payload:
                    Payloads.Enqueue(payload.Payload);
                    break;
                case Akka.Remote.Transport.Disassociated:
                    Interlocked.Increment(ref Disassociated);
                    break;
            }
        }
    }
}
