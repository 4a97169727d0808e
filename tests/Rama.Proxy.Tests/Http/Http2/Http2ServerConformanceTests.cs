using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using Microsoft.Extensions.Time.Testing;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Http.Http2.Hpack;

namespace Rama.Proxy.Tests.Http.Http2;

/// <summary>h2spec-style cases: raw frames in, the server's exact answer (RFC 9113 section in each name's comment).</summary>
public class Http2ServerConformanceTests
{
    [Fact]
    public async Task Bad_preface_is_a_protocol_error()
    {
        // §3.4
        await using var client = new RawH2Client();
        await client.SendAsync("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray());
        Assert.Equal(Http2ErrorCode.ProtocolError, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Missing_preface_times_out_with_a_protocol_error()
    {
        var time = new FakeTimeProvider();
        await using var client = new RawH2Client(time: time);
        await client.SendAsync("PRI * HTTP/2.0\r\n"u8.ToArray());
        time.Advance(new Http2Limits().PrefaceTimeout + TimeSpan.FromSeconds(1));
        Assert.Equal(Http2ErrorCode.ProtocolError, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Idle_connection_ends_with_goaway_no_error_but_not_while_a_stream_is_open()
    {
        var time = new FakeTimeProvider();
        var gate = new TaskCompletionSource();
        var idle = new Http2Limits().IdleTimeout;
        await using var client = new RawH2Client(Http2TestServices.Application(gate), time: time);
        await client.HandshakeAsync();
        await client.HeadersAsync(1, true, RawH2Client.Get("/slow"));
        await client.SendAsync(o => Http2FrameWriter.WritePing(o, 1, ack: false));
        await client.ExpectAsync(Http2FrameType.Ping);
        time.Advance(idle * 2); // a stream is open: not idle
        await client.SendAsync(o => Http2FrameWriter.WritePing(o, 2, ack: false));
        await client.ExpectAsync(Http2FrameType.Ping);
        gate.SetResult();
        Assert.Equal(200, (await client.ReadResponseAsync(1, new HpackDecoder())).Status);
        time.Advance(idle + idle / 4);
        Assert.Equal(Http2ErrorCode.NoError, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task First_frame_other_than_settings_is_a_protocol_error()
    {
        // §3.4
        await using var client = new RawH2Client();
        await client.SendAsync(Http2Preface.Bytes.ToArray());
        await client.SendAsync(o => Http2FrameWriter.WritePing(o, 1, ack: false));
        Assert.Equal(Http2ErrorCode.ProtocolError, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Frame_larger_than_max_frame_size_is_a_frame_size_error()
    {
        // §4.2
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.HeadersAsync(1, false, RawH2Client.Post());
        await client.SendAsync(o => Http2FrameWriter.WriteData(o, 1, new ReadOnlySequence<byte>(new byte[16_385]), endStream: false));
        Assert.Equal(Http2ErrorCode.FrameSizeError, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Data_on_an_idle_stream_is_a_protocol_error()
    {
        // §5.1 idle
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.DataAsync(1, "x"u8.ToArray(), endStream: true);
        Assert.Equal(Http2ErrorCode.ProtocolError, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Headers_on_a_closed_stream_is_stream_closed()
    {
        // §5.1 closed
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.HeadersAsync(1, true, RawH2Client.Get());
        var (status, body, _) = await client.ReadResponseAsync(1, new HpackDecoder());
        Assert.Equal((200, "hello h2\n"), (status, System.Text.Encoding.ASCII.GetString(body)));
        await client.HeadersAsync(1, true, RawH2Client.Get());
        Assert.Equal(Http2ErrorCode.StreamClosed, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Headers_with_a_lower_never_used_stream_id_is_a_protocol_error()
    {
        // §5.1.1
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.HeadersAsync(5, true, RawH2Client.Get());
        await client.ReadResponseAsync(5, new HpackDecoder());
        await client.HeadersAsync(3, true, RawH2Client.Get());
        Assert.Equal(Http2ErrorCode.ProtocolError, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Data_after_end_stream_is_stream_closed_on_that_stream()
    {
        // §5.1 half-closed (remote)
        var gate = new TaskCompletionSource();
        await using var client = new RawH2Client(Http2TestServices.Application(gate));
        await client.HandshakeAsync();
        await client.HeadersAsync(1, true, RawH2Client.Get("/slow"));
        await client.DataAsync(1, "x"u8.ToArray(), endStream: false);
        Assert.Equal(Http2ErrorCode.StreamClosed, await client.ExpectRstStreamAsync(1));
        gate.SetResult();
    }

    [Fact]
    public async Task Even_stream_id_from_a_client_is_a_protocol_error()
    {
        // §5.1.1
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.HeadersAsync(2, true, RawH2Client.Get());
        Assert.Equal(Http2ErrorCode.ProtocolError, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Connection_window_overflow_is_a_flow_control_error()
    {
        // §6.9.1
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.SendAsync(o => Http2FrameWriter.WriteWindowUpdate(o, 0, int.MaxValue));
        Assert.Equal(Http2ErrorCode.FlowControlError, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Stream_window_overflow_is_a_flow_control_error_on_the_stream()
    {
        // §6.9.1
        var gate = new TaskCompletionSource();
        await using var client = new RawH2Client(Http2TestServices.Application(gate));
        await client.HandshakeAsync();
        await client.HeadersAsync(1, true, RawH2Client.Get("/slow"));
        await client.SendAsync(o => Http2FrameWriter.WriteWindowUpdate(o, 1, int.MaxValue));
        Assert.Equal(Http2ErrorCode.FlowControlError, await client.ExpectRstStreamAsync(1));
        gate.SetResult();
    }

    [Fact]
    public async Task Data_beyond_our_stream_window_is_a_flow_control_error()
    {
        // §6.9.1: we announce InitialStreamWindowSize; the application does not read.
        var limits = new Http2Limits { InitialStreamWindowSize = 100 };
        var gate = new TaskCompletionSource();
        await using var client = new RawH2Client(Service.FromFunc<HttpRequest, HttpResponse>(async (_, ct) =>
        {
            await gate.Task.WaitAsync(ct);
            return new HttpResponse(204);
        }), limits);
        await client.HandshakeAsync();
        await client.HeadersAsync(1, false, RawH2Client.Post());
        await client.DataAsync(1, new byte[101], endStream: false);
        Assert.Equal(Http2ErrorCode.FlowControlError, await client.ExpectRstStreamAsync(1));
    }

    public static TheoryData<string, Http2ErrorCode> BadSettings => new()
    {
        { "0002" + "00000002", Http2ErrorCode.ProtocolError },     // ENABLE_PUSH 2
        { "0004" + "80000000", Http2ErrorCode.FlowControlError },  // INITIAL_WINDOW_SIZE 2^31
        { "0005" + "00003fff", Http2ErrorCode.ProtocolError },     // MAX_FRAME_SIZE 16383
        { "0005" + "01000000", Http2ErrorCode.ProtocolError },     // MAX_FRAME_SIZE 2^24
        { "0008" + "00000002", Http2ErrorCode.ProtocolError },     // ENABLE_CONNECT_PROTOCOL 2
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public async Task Settings_with_a_bad_value_end_the_connection(string parameter, Http2ErrorCode expected)
    {
        // §6.5.2
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        var payload = Convert.FromHexString(parameter);
        var frame = new byte[9 + payload.Length];
        Http2FrameWriter.WriteHeader(frame, payload.Length, Http2FrameType.Settings, 0, 0);
        payload.CopyTo(frame, 9);
        await client.SendAsync(frame);
        Assert.Equal(expected, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Settings_ack_with_a_payload_is_a_frame_size_error()
    {
        // §6.5
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.SendAsync(Convert.FromHexString("000006" + "04" + "01" + "00000000" + "000100001000"));
        Assert.Equal(Http2ErrorCode.FrameSizeError, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Settings_are_acknowledged_and_a_missing_ack_times_out()
    {
        // §6.5.3
        var time = new FakeTimeProvider();
        await using var client = new RawH2Client(time: time);
        await client.SendAsync(Http2Preface.Bytes.ToArray());
        await client.SendAsync(o => Http2FrameWriter.WriteSettings(o, []));
        await client.ExpectAsync(Http2FrameType.Settings); // theirs
        var ack = await client.ExpectAsync(Http2FrameType.Settings); // the ACK of ours
        Assert.True(ack.Header.HasFlag(Http2Flags.Ack));
        time.Advance(new Http2Limits().SettingsAckTimeout + TimeSpan.FromSeconds(1));
        Assert.Equal(Http2ErrorCode.SettingsTimeout, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Ping_is_answered_with_the_same_data()
    {
        // §6.7
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.SendAsync(o => Http2FrameWriter.WritePing(o, 0x1122334455667788, ack: false));
        var (header, payload) = await client.ExpectAsync(Http2FrameType.Ping);
        Assert.True(header.HasFlag(Http2Flags.Ack));
        Assert.Equal(0x1122334455667788UL, BinaryPrimitives.ReadUInt64BigEndian(payload));
    }

    [Fact]
    public async Task Window_update_of_zero_on_the_connection_is_a_protocol_error()
    {
        // §6.9
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.SendAsync(Convert.FromHexString("000004" + "08" + "00" + "00000000" + "00000000"));
        Assert.Equal(Http2ErrorCode.ProtocolError, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Window_update_of_zero_on_a_stream_resets_it()
    {
        // §6.9
        var gate = new TaskCompletionSource();
        await using var client = new RawH2Client(Http2TestServices.Application(gate));
        await client.HandshakeAsync();
        await client.HeadersAsync(1, true, RawH2Client.Get("/slow"));
        await client.SendAsync(Convert.FromHexString("000004" + "08" + "00" + "00000001" + "00000000"));
        Assert.Equal(Http2ErrorCode.ProtocolError, await client.ExpectRstStreamAsync(1));
        gate.SetResult();
    }

    [Fact]
    public async Task Frame_between_headers_and_continuation_is_a_protocol_error()
    {
        // §6.10
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        var block = client.Block(RawH2Client.Get());
        await client.SendAsync(o =>
        {
            RawH2Client.WriteHeadersWithoutEndHeaders(o, 1, block.AsSpan(0, 5));
            Http2FrameWriter.WritePing(o, 1, ack: false);
            Http2FrameWriter.WriteContinuation(o, 1, block.AsSpan(5), endHeaders: true);
        });
        Assert.Equal(Http2ErrorCode.ProtocolError, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Headers_split_over_continuation_frames_are_served()
    {
        // §4.3, §6.10
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        var block = client.Block([.. RawH2Client.Get(), ("x-long", new string('a', 3000))]);
        await client.SendAsync(o =>
        {
            Http2FrameWriter.WriteHeaders(o, 1, block, endStream: true, maxFrameSize: 1000); // HEADERS + 3 CONTINUATION
        });
        var (status, _, _) = await client.ReadResponseAsync(1, new HpackDecoder());
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task Streams_past_max_concurrent_are_refused_and_the_others_finish()
    {
        // §5.1.2
        var gate = new TaskCompletionSource();
        await using var client = new RawH2Client(Http2TestServices.Application(gate), new Http2Limits { MaxConcurrentStreams = 2 });
        await client.HandshakeAsync();
        await client.HeadersAsync(1, true, RawH2Client.Get("/slow"));
        await client.HeadersAsync(3, true, RawH2Client.Get("/slow"));
        await client.HeadersAsync(5, true, RawH2Client.Get("/slow"));
        Assert.Equal(Http2ErrorCode.RefusedStream, await client.ExpectRstStreamAsync(5));

        // §5.1: DATA sent before the client saw our RST_STREAM is ignored, not answered with another reset.
        await client.DataAsync(5, "late"u8.ToArray(), endStream: true);
        await client.SendAsync(o => Http2FrameWriter.WritePing(o, 5, ack: false));
        Assert.Equal(Http2FrameType.Ping, (await client.ReadFrameAsync()).Header.Type);

        gate.SetResult();
        var responses = await client.ReadResponsesAsync(new HpackDecoder(), 1, 3);
        Assert.Equal((200, 200), (responses[1].Status, responses[3].Status));
    }

    [Fact]
    public async Task Goaway_drain_takes_streams_sent_before_the_client_saw_it_lets_them_finish_then_closes()
    {
        // §6.8: GOAWAY with 2^31-1 and a PING; a stream the client opened before it saw them is still served; the PING's
        // ACK (one round trip) brings the final GOAWAY with the last stream taken, and later streams are refused.
        var gate = new TaskCompletionSource();
        await using var client = new RawH2Client(Http2TestServices.Application(gate));
        await client.HandshakeAsync();
        await client.HeadersAsync(1, true, RawH2Client.Get("/slow"));
        await client.HeadersAsync(3, true, RawH2Client.Get("/slow"));
        await client.SendAsync(o => Http2FrameWriter.WritePing(o, 7, ack: false));
        await client.ExpectAsync(Http2FrameType.Ping); // both streams were read
        var (ping, data) = await DrainAndExpectAnnouncementAsync(client);
        Assert.False(ping.HasFlag(Http2Flags.Ack));

        await client.HeadersAsync(5, true, RawH2Client.Get("/slow")); // on its way when the GOAWAY left
        await AckPingAsync(client, data);
        Assert.Equal((5, Http2ErrorCode.NoError), await ExpectGoAwayAsync(client));
        await client.HeadersAsync(7, true, RawH2Client.Get());
        Assert.Equal(Http2ErrorCode.RefusedStream, await client.ExpectRstStreamAsync(7));
        Assert.False(client.Server.IsCompleted);
        gate.SetResult();
        var responses = await client.ReadResponsesAsync(new HpackDecoder(), 1, 3, 5);
        Assert.Equal((200, 200, 200), (responses[1].Status, responses[3].Status, responses[5].Status));
        Assert.Null(await client.TryReadFrameAsync());
        await client.Server.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Goaway_drain_of_a_client_that_never_acks_the_ping_sends_the_final_goaway_after_the_round_trip_wait()
    {
        await using var client = new RawH2Client(Http2TestServices.Application());
        await client.HandshakeAsync();
        await DrainAndExpectAnnouncementAsync(client);
        var waited = System.Diagnostics.Stopwatch.StartNew();
        await client.HeadersAsync(1, true, RawH2Client.Get());
        Assert.Equal(200, (await client.ReadResponseAsync(1, new HpackDecoder())).Status);

        Assert.Equal((1, Http2ErrorCode.NoError), await ExpectGoAwayAsync(client));
        Assert.InRange(waited.Elapsed, new Http2Limits().DrainPingTimeout * 0.8, TimeSpan.FromSeconds(9));
        Assert.Null(await client.TryReadFrameAsync()); // nothing in flight: closed
        await client.Server.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_goaway_after_the_drains_final_one_never_names_a_higher_stream()
    {
        // §6.8: "Endpoints MUST NOT increase the value they send in the last stream identifier". A stream the client opens
        // after the final GOAWAY is refused, and a connection error after that still names the drain's last stream.
        var gate = new TaskCompletionSource();
        await using var client = new RawH2Client(Http2TestServices.Application(gate));
        await client.HandshakeAsync();
        await client.HeadersAsync(1, true, RawH2Client.Get("/slow"));
        var (_, data) = await DrainAndExpectAnnouncementAsync(client);
        await AckPingAsync(client, data);
        Assert.Equal((1, Http2ErrorCode.NoError), await ExpectGoAwayAsync(client));

        await client.HeadersAsync(3, true, RawH2Client.Get());
        Assert.Equal(Http2ErrorCode.RefusedStream, await client.ExpectRstStreamAsync(3));
        await client.SendAsync(o => Http2FrameWriter.WriteWindowUpdate(o, 0, 0)); // a zero increment on the connection: PROTOCOL_ERROR (§6.9)
        Assert.Equal((1, Http2ErrorCode.ProtocolError), await ExpectGoAwayAsync(client));
        gate.SetResult();
        await client.Server.WaitAsync(TimeSpan.FromSeconds(10));
    }

    /// <summary>Starts the server's drain and reads its first step: GOAWAY 2^31-1 NO_ERROR, then the PING that times the round trip.</summary>
    private static async Task<(Http2FrameHeader Header, byte[] Payload)> DrainAndExpectAnnouncementAsync(RawH2Client client)
    {
        client.Drain();
        Assert.Equal((int.MaxValue, Http2ErrorCode.NoError), await ExpectGoAwayAsync(client));
        return await client.ExpectAsync(Http2FrameType.Ping);
    }

    private static Task AckPingAsync(RawH2Client client, byte[] payload) =>
        client.SendAsync(o => Http2FrameWriter.WritePing(o, Http2FrameReader.ReadPing(new ReadOnlySequence<byte>(payload)), ack: true));

    private static async Task<(int Last, Http2ErrorCode Code)> ExpectGoAwayAsync(RawH2Client client)
    {
        var (_, payload) = await client.ExpectAsync(Http2FrameType.GoAway);
        var (last, code, _) = Http2FrameReader.ReadGoAway(new ReadOnlySequence<byte>(payload));
        return (last, code);
    }

    [Fact]
    public async Task Rapid_reset_ends_the_connection_with_enhance_your_calm_after_bounded_work()
    {
        // CVE-2023-44487: HEADERS then RST_STREAM, over and over.
        var served = 0;
        var limits = new Http2Limits { MaxResetsPerWindow = 50 };
        await using var client = new RawH2Client(Service.FromFunc<HttpRequest, HttpResponse>(async (_, ct) =>
        {
            Interlocked.Increment(ref served);
            await Task.Delay(Timeout.Infinite, ct);
            return new HttpResponse(204);
        }), limits);
        await client.HandshakeAsync();
        var block = client.Block(RawH2Client.Get());
        await client.SendAsync(o =>
        {
            for (var id = 1; id < 2 * 1000; id += 2)
            {
                Http2FrameWriter.WriteHeaders(o, id, block, endStream: true, 16_384);
                Http2FrameWriter.WriteRstStream(o, id, Http2ErrorCode.Cancel);
            }
        });
        Assert.Equal(Http2ErrorCode.EnhanceYourCalm, await client.ExpectGoAwayAndCloseAsync());
        Assert.InRange(served, 0, limits.MaxResetsPerWindow + 1);
    }

    [Fact]
    public async Task Continuation_flood_ends_the_connection_with_enhance_your_calm()
    {
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        var junk = new byte[1000];
        await client.SendAsync(o =>
        {
            RawH2Client.WriteHeadersWithoutEndHeaders(o, 1, [0x82]);
            for (var i = 0; i < 100; i++)
            {
                Http2FrameWriter.WriteContinuation(o, 1, junk, endHeaders: false);
            }
        });
        Assert.Equal(Http2ErrorCode.EnhanceYourCalm, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Empty_continuation_flood_ends_the_connection_with_enhance_your_calm()
    {
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.SendAsync(o =>
        {
            RawH2Client.WriteHeadersWithoutEndHeaders(o, 1, [0x82]);
            for (var i = 0; i < 1000; i++)
            {
                Http2FrameWriter.WriteContinuation(o, 1, [], endHeaders: false);
            }
        });
        Assert.Equal(Http2ErrorCode.EnhanceYourCalm, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Hpack_bomb_is_answered_431_with_bounded_memory_and_the_connection_goes_on()
    {
        // RFC 9113 §10.5.1: one 4 KiB entry indexed 100 times decodes to 400 KiB; the list stops at 32 KiB.
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        var bomb = new ArrayBufferWriter<byte>();
        bomb.Write(client.Block(RawH2Client.Get()));
        var encoder = new HpackEncoder(new HpackEncoderOptions { Huffman = HpackHuffmanMode.Never });
        var value = new string('b', 3000);
        encoder.Encode([new HpackHeaderField("x-bomb"u8.ToArray(), System.Text.Encoding.ASCII.GetBytes(value), HpackIndexing.Incremental)], bomb);
        for (var i = 0; i < 100; i++)
        {
            bomb.Write(new byte[] { 0xbe }); // indexed: dynamic entry 62
        }

        var bytes = bomb.WrittenSpan.ToArray();
        await client.SendAsync(o => Http2FrameWriter.WriteHeaders(o, 1, bytes, endStream: true, 16_384));
        var decoder = new HpackDecoder();
        Assert.Equal(431, (await client.ReadResponseAsync(1, decoder)).Status);
        await client.HeadersAsync(3, true, RawH2Client.Get());
        Assert.Equal(200, (await client.ReadResponseAsync(3, decoder)).Status);
    }

    [Fact]
    public async Task Undecodable_header_block_is_a_compression_error()
    {
        // §4.3: an index past both tables; and a literal longer than the string limit.
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.SendAsync(o => Http2FrameWriter.WriteHeaders(o, 1, new byte[] { 0xff, 0x7f }, endStream: true, 16_384));
        Assert.Equal(Http2ErrorCode.CompressionError, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Repeated_hpack_bombs_end_the_connection()
    {
        await using var client = new RawH2Client(limits: new Http2Limits { MaxResetsPerWindow = 5 });
        await client.HandshakeAsync();
        var big = new string('c', 8000);
        for (var id = 1; id <= 15; id += 2)
        {
            // 5 x 8 KB literals without indexing: 40 KB > 32 KiB list limit.
            await client.HeadersAsync(id, true, [.. RawH2Client.Get(), ("a", big), ("b", big), ("c", big), ("d", big), ("e", big)]);
        }

        Assert.Equal(Http2ErrorCode.EnhanceYourCalm, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Zero_window_stall_resets_the_stream_after_the_send_timeout()
    {
        // RFC 9113 §10.5: a peer that never opens its window must not hold the response forever.
        var time = new FakeTimeProvider();
        await using var client = new RawH2Client(time: time);
        await client.HandshakeAsync(new Http2Setting((ushort)Http2SettingId.InitialWindowSize, 0));
        await client.HeadersAsync(1, true, RawH2Client.Get("/big"));
        await client.ExpectAsync(Http2FrameType.Headers, 1);
        await client.SendAsync(o => Http2FrameWriter.WritePing(o, 9, ack: false));
        await client.ExpectAsync(Http2FrameType.Ping);
        Assert.Equal(Http2ErrorCode.Cancel, await PastSendWindowTimeoutAsync(time, client.ExpectRstStreamAsync(1)));
    }

    [Fact]
    public async Task Connection_window_stall_ends_the_connection_after_the_send_timeout()
    {
        // The stream window is large, the connection window stays at its initial 65,535: 64 KiB go out, then nothing.
        var time = new FakeTimeProvider();
        await using var client = new RawH2Client(time: time);
        await client.HandshakeAsync(new Http2Setting((ushort)Http2SettingId.InitialWindowSize, 4 * 1024 * 1024));
        await client.HeadersAsync(1, true, RawH2Client.Get("/big"));
        var received = 0;
        while (received < 65_535)
        {
            received += (await client.ExpectAsync(Http2FrameType.Data, 1)).Payload.Length;
        }

        Assert.Equal(65_535, received);
        await client.SendAsync(o => Http2FrameWriter.WritePing(o, 9, ack: false));
        await client.ExpectAsync(Http2FrameType.Ping);
        Assert.Equal(Http2ErrorCode.EnhanceYourCalm, await PastSendWindowTimeoutAsync(time, client.ExpectGoAwayAndCloseAsync()));
    }

    [Fact]
    public async Task Initial_window_size_change_applies_to_open_streams()
    {
        // §6.9.2: window 0, then raised by SETTINGS: the body flows.
        await using var client = new RawH2Client();
        await client.HandshakeAsync(new Http2Setting((ushort)Http2SettingId.InitialWindowSize, 0));
        await client.HeadersAsync(1, true, RawH2Client.Get("/hello"));
        await client.ExpectAsync(Http2FrameType.Headers, 1);
        await client.SendAsync(o => Http2FrameWriter.WriteSettings(o, [new Http2Setting((ushort)Http2SettingId.InitialWindowSize, 65_535)]));
        var (header, payload) = await client.ExpectAsync(Http2FrameType.Data, 1);
        Assert.Equal("hello h2\n", System.Text.Encoding.ASCII.GetString(payload));
        Assert.True(header.HasFlag(Http2Flags.EndStream));
    }

    public static TheoryData<string, string> MalformedHeads => new()
    {
        { "uppercase name", "X-Upper" },
        { "connection-specific", "connection" },
        { "te not trailers", "te" },
    };

    [Theory]
    [MemberData(nameof(MalformedHeads))]
    public async Task Malformed_request_is_reset_with_protocol_error(string why, string name)
    {
        // §8.2.1, §8.2.2
        Assert.NotEmpty(why);
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.HeadersAsync(1, true, [.. RawH2Client.Get(), (name, "gzip")]);
        Assert.Equal(Http2ErrorCode.ProtocolError, await client.ExpectRstStreamAsync(1));
    }

    [Fact]
    public async Task Missing_path_and_pseudo_after_regular_are_malformed()
    {
        // §8.3.1
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.HeadersAsync(1, true, (":method", "GET"), (":scheme", "http"));
        Assert.Equal(Http2ErrorCode.ProtocolError, await client.ExpectRstStreamAsync(1));
        await client.HeadersAsync(3, true, (":method", "GET"), ("accept", "*/*"), (":path", "/"), (":scheme", "http"));
        Assert.Equal(Http2ErrorCode.ProtocolError, await client.ExpectRstStreamAsync(3));
    }

    [Fact]
    public async Task Data_not_matching_content_length_is_malformed()
    {
        // §8.1.1
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.HeadersAsync(1, false, [.. RawH2Client.Post(), ("content-length", "3")]);
        await client.DataAsync(1, "abcd"u8.ToArray(), endStream: true);
        Assert.Equal(Http2ErrorCode.ProtocolError, await client.ExpectRstStreamAsync(1));
    }

    [Fact]
    public async Task Post_body_is_echoed_and_response_trailers_are_sent()
    {
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.HeadersAsync(1, false, RawH2Client.Post());
        await client.DataAsync(1, "abc"u8.ToArray(), endStream: false);
        await client.DataAsync(1, "def"u8.ToArray(), endStream: true);
        var decoder = new HpackDecoder();
        var echo = await client.ReadResponseAsync(1, decoder);
        Assert.Equal("abcdef", System.Text.Encoding.ASCII.GetString(echo.Body));
        await client.HeadersAsync(3, true, RawH2Client.Get("/trailers"));
        var withTrailers = await client.ReadResponseAsync(3, decoder);
        Assert.Equal("grpc-ish", System.Text.Encoding.ASCII.GetString(withTrailers.Body));
        Assert.Equal([("grpc-status", "0")], withTrailers.Trailers!.Select(f => (f.NameText, f.ValueText)));
    }

    [Fact]
    public async Task Request_trailers_reach_the_application_after_the_body()
    {
        var seen = new TaskCompletionSource<string>();
        await using var client = new RawH2Client(Service.FromFunc<HttpRequest, HttpResponse>(async (request, ct) =>
        {
            while (true)
            {
                var read = await request.Body.ReadAsync(ct);
                request.Body.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted)
                {
                    break;
                }
            }

            seen.SetResult(request.Trailers?.GetText("x-checksum") ?? "none");
            return new HttpResponse(204);
        }));
        await client.HandshakeAsync();
        await client.HeadersAsync(1, false, RawH2Client.Post());
        await client.DataAsync(1, "abc"u8.ToArray(), endStream: false);
        await client.HeadersAsync(1, true, ("x-checksum", "42"));
        Assert.Equal("42", await seen.Task.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Extended_connect_becomes_a_tunnel_both_ways()
    {
        // RFC 8441 §4, §5: :protocol websocket, 200, then DATA both ways.
        Http2RequestInfo? info = null;
        await using var client = new RawH2Client(Service.FromFunc<HttpRequest, HttpResponse>((request, _) =>
        {
            info = request.Extensions.Get<Http2RequestInfo>();
            return ValueTask.FromResult(new HttpResponse(200)
            {
                OnUpgrade = async (pipe, ct) =>
                {
                    while (true)
                    {
                        var read = await pipe.Input.ReadAsync(ct);
                        foreach (var segment in read.Buffer)
                        {
                            await pipe.Output.WriteAsync(segment, ct);
                        }

                        pipe.Input.AdvanceTo(read.Buffer.End);
                        if (read.IsCompleted)
                        {
                            return;
                        }
                    }
                },
            });
        }));
        await client.HandshakeAsync();
        await client.HeadersAsync(1, false, (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/chat"), (":authority", "test"));
        var (head, _) = await client.ExpectAsync(Http2FrameType.Headers, 1);
        Assert.False(head.HasFlag(Http2Flags.EndStream));
        await client.DataAsync(1, "ping-1"u8.ToArray(), endStream: false);
        var (_, echoed) = await client.ExpectAsync(Http2FrameType.Data, 1);
        Assert.Equal("ping-1", System.Text.Encoding.ASCII.GetString(echoed));
        await client.DataAsync(1, [], endStream: true);
        var (end, _) = await client.ExpectAsync(Http2FrameType.Data, 1);
        Assert.True(end.HasFlag(Http2Flags.EndStream));
        Assert.Equal(new Http2RequestInfo(1, "http", "test", "websocket"), info);
    }

    [Fact]
    public async Task Akamai_fingerprint_of_a_chrome_like_preface()
    {
        // Chrome's first frames (Akamai format; httpcloak.dev and krowdev.com list Chrome 144-148 with this value).
        await using var client = new RawH2Client();
        await client.SendAsync(Http2Preface.Bytes.ToArray());
        await client.SendAsync(o =>
        {
            Http2FrameWriter.WriteSettings(o, [new(1, 65536), new(2, 0), new(4, 6291456), new(6, 262144)]);
            Http2FrameWriter.WriteWindowUpdate(o, 0, 15663105);
        });
        await client.HeadersAsync(1, true, (":method", "GET"), (":authority", "test"), (":scheme", "https"), (":path", "/info"));
        var (status, body, _) = await client.ReadResponseAsync(1, new HpackDecoder());
        Assert.Equal(200, status);
        Assert.EndsWith(" 1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p\n", System.Text.Encoding.ASCII.GetString(body), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Akamai_fingerprint_with_priority_frames_like_old_firefox()
    {
        // Firefox before 2023: PRIORITY frames on idle streams 3..13 (weights on the wire are value - 1).
        await using var client = new RawH2Client();
        await client.SendAsync(Http2Preface.Bytes.ToArray());
        await client.SendAsync(o =>
        {
            Http2FrameWriter.WriteSettings(o, [new(1, 65536), new(4, 131072), new(5, 16384)]);
            Http2FrameWriter.WriteWindowUpdate(o, 0, 12517377);
            Http2FrameWriter.WritePriority(o, 3, new Http2Priority(0, false, 200));
            Http2FrameWriter.WritePriority(o, 5, new Http2Priority(0, false, 100));
            Http2FrameWriter.WritePriority(o, 7, new Http2Priority(0, false, 0));
            Http2FrameWriter.WritePriority(o, 9, new Http2Priority(7, false, 0));
            Http2FrameWriter.WritePriority(o, 11, new Http2Priority(3, false, 0));
            Http2FrameWriter.WritePriority(o, 13, new Http2Priority(0, false, 240));
        });
        await client.HeadersAsync(15, true, (":method", "GET"), (":path", "/info"), (":authority", "test"), (":scheme", "https"));
        var (_, body, _) = await client.ReadResponseAsync(15, new HpackDecoder());
        Assert.EndsWith(" 1:65536;4:131072;5:16384|12517377|3:0:0:201,5:0:0:101,7:0:0:1,9:0:7:1,11:0:3:1,13:0:0:241|m,p,a,s\n",
            System.Text.Encoding.ASCII.GetString(body), StringComparison.Ordinal);
    }

    [Fact]
    public void Akamai_string_from_a_fingerprint_record()
    {
        var fingerprint = new Http2Fingerprint([new(1, 65536), new(2, 0), new(4, 6291456), new(6, 262144)], 15663105, [], "masp");
        Assert.Equal("1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p", fingerprint.Akamai);
    }

    [Fact]
    public async Task Peer_reset_cancels_the_application()
    {
        var cancelled = new TaskCompletionSource();
        await using var client = new RawH2Client(Service.FromFunc<HttpRequest, HttpResponse>(async (_, ct) =>
        {
            using var registration = ct.Register(() => cancelled.TrySetResult());
            await Task.Delay(Timeout.Infinite, ct);
            return new HttpResponse(204);
        }));
        await client.HandshakeAsync();
        await client.HeadersAsync(1, true, RawH2Client.Get());
        await client.SendAsync(o => Http2FrameWriter.WriteRstStream(o, 1, Http2ErrorCode.Cancel));
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Push_promise_from_a_client_is_a_protocol_error()
    {
        // §8.4
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.SendAsync(o => Http2FrameWriter.WritePushPromise(o, 1, 2, [0x82]));
        Assert.Equal(Http2ErrorCode.ProtocolError, await client.ExpectGoAwayAndCloseAsync());
    }

    [Fact]
    public async Task Unknown_frame_type_is_ignored()
    {
        // §5.5
        await using var client = new RawH2Client();
        await client.HandshakeAsync();
        await client.SendAsync(Convert.FromHexString("000003" + "fa" + "00" + "00000000" + "616263"));
        await client.SendAsync(o => Http2FrameWriter.WritePing(o, 3, ack: false));
        Assert.Equal(Http2FrameType.Ping, (await client.ExpectAsync(Http2FrameType.Ping)).Header.Type);
    }

    /// <summary>
    /// Moves fake time past the send-window timeout until <paramref name="answer"/> comes: the writer starts its wait for
    /// window on a thread-pool thread after its frames went out (the PING answered by the read loop does not say it has), and
    /// a timer made after an advance does not see it. Each step is the whole timeout, so any answer is the timeout's.
    /// </summary>
    private static async Task<T> PastSendWindowTimeoutAsync<T>(FakeTimeProvider time, Task<T> answer)
    {
        var step = new Http2Limits().SendWindowTimeout + TimeSpan.FromSeconds(1);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!answer.IsCompleted && DateTime.UtcNow < deadline)
        {
            time.Advance(step);
            await Task.WhenAny(answer, Task.Delay(50));
        }

        return await answer;
    }
}
