using Rama.Proxy.Http.Http2.Hpack;

namespace Rama.Proxy.Http.Http2;

/// <summary>
/// Limits and timeouts of an HTTP/2 connection (both roles). Every default names its source. Call
/// <see cref="Validate"/> at start-up.
/// </summary>
public sealed record Http2Limits
{
    /// <summary>
    /// SETTINGS_MAX_CONCURRENT_STREAMS we announce and enforce (RFC 9113 §5.1.2): a HEADERS past it is refused
    /// with RST_STREAM(REFUSED_STREAM). Default 100: Kestrel's default and the RFC's recommended minimum.
    /// </summary>
    public int MaxConcurrentStreams { get; init; } = 100;

    /// <summary>SETTINGS_INITIAL_WINDOW_SIZE we announce (§6.9.2): bytes a peer may send on one stream before we read them. Default 768 KiB: Kestrel.</summary>
    public int InitialStreamWindowSize { get; init; } = 768 * 1024;

    /// <summary>Our connection receive window (§6.9.1), raised from 65,535 by a WINDOW_UPDATE after the preface. Default 1 MiB: Kestrel.</summary>
    public int InitialConnectionWindowSize { get; init; } = 1024 * 1024;

    /// <summary>SETTINGS_MAX_FRAME_SIZE we announce and enforce (§4.2): a larger frame is a FRAME_SIZE_ERROR. Default 16,384: the protocol's initial value (Kestrel, nginx).</summary>
    public int MaxFrameSize { get; init; } = Http2FrameReader.MinMaxFrameSize;

    /// <summary>HPACK decoder limits; <see cref="HpackLimits.MaxHeaderListSize"/> is announced as SETTINGS_MAX_HEADER_LIST_SIZE (§6.5.2).</summary>
    public HpackLimits Hpack { get; init; } = new();

    /// <summary>
    /// Largest compressed header block (HEADERS plus its CONTINUATION frames, §4.3) we buffer before decoding:
    /// past it the connection ends with ENHANCE_YOUR_CALM (the CONTINUATION flood, CVE-2024-27316 family).
    /// Default 64 KiB: twice the default decoded header list size (HPACK never needs more than that for a list that fits).
    /// </summary>
    public int MaxHeaderBlockSize { get; init; } = 64 * 1024;

    /// <summary>CONTINUATION frames per header block; past it, ENHANCE_YOUR_CALM (empty CONTINUATION frames add no bytes). Default 32: nghttp2's 8 frames per 16 KiB of list size, with room.</summary>
    public int MaxContinuationFrames { get; init; } = 32;

    /// <summary>
    /// Streams a peer may reset, or we may refuse or reset, per <see cref="ResetWindow"/> before the connection ends
    /// with GOAWAY(ENHANCE_YOUR_CALM): the rapid-reset attack (CVE-2023-44487). Default 200 per 10 s: twice
    /// <see cref="MaxConcurrentStreams"/>, the order of magnitude nginx and Kestrel settled on.
    /// </summary>
    public int MaxResetsPerWindow { get; init; } = 200;

    /// <summary>The window of <see cref="MaxResetsPerWindow"/>. Default 10 s.</summary>
    public TimeSpan ResetWindow { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long our SETTINGS may wait for its ACK before the connection ends with SETTINGS_TIMEOUT (§6.5.3). Default 10 s: nghttp2.</summary>
    public TimeSpan SettingsAckTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a sender may wait for the peer to open a flow-control window it keeps at zero before the stream is
    /// reset with CANCEL (the zero-window stall, RFC 9113 §10.5). Default 30 s: half nginx's send_timeout (60 s), so a stalled peer stays cheap.
    /// </summary>
    public TimeSpan SendWindowTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A connection with no open stream and no frame from the peer for this long ends with GOAWAY(NO_ERROR), both roles
    /// (a pool drops the client connection: <see cref="Http2ClientConnection.IsUsable"/> turns false).
    /// Default 130 s: Kestrel's KeepAliveTimeout.
    /// </summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(130);

    /// <summary>
    /// A server's graceful drain (RFC 9113 §6.8) sends GOAWAY with 2^31-1 and a PING, and the final GOAWAY when the PING's ACK
    /// is back: one round trip, for streams the client opened before it saw the first. A client that does not answer gets
    /// the final GOAWAY after this long. Default 1 s.
    /// </summary>
    public TimeSpan DrainPingTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How long a server waits for the client preface and first SETTINGS. Default 10 s: Kestrel's request headers timeout.</summary>
    public TimeSpan PrefaceTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Announce SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3, server role) so clients may use extended CONNECT (WebSocket over HTTP/2). Default true.</summary>
    public bool EnableConnectProtocol { get; init; } = true;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad option.</summary>
    public void Validate()
    {
        HttpLimits.Positive(MaxConcurrentStreams, nameof(MaxConcurrentStreams));
        if (InitialStreamWindowSize is < 1 or > Http2FrameReader.MaxWindowSize)
        {
            throw new ArgumentException($"{nameof(Http2Limits)}.{nameof(InitialStreamWindowSize)} must be 1..2^31-1", nameof(InitialStreamWindowSize));
        }

        if (InitialConnectionWindowSize is < 65_535 or > Http2FrameReader.MaxWindowSize)
        {
            throw new ArgumentException($"{nameof(Http2Limits)}.{nameof(InitialConnectionWindowSize)} must be 65535..2^31-1", nameof(InitialConnectionWindowSize));
        }

        if (MaxFrameSize is < Http2FrameReader.MinMaxFrameSize or > Http2FrameReader.MaxMaxFrameSize)
        {
            throw new ArgumentException($"{nameof(Http2Limits)}.{nameof(MaxFrameSize)} must be 2^14..2^24-1", nameof(MaxFrameSize));
        }

        Hpack.Validate();
        HttpLimits.Positive(MaxHeaderBlockSize, nameof(MaxHeaderBlockSize));
        HttpLimits.Positive(MaxContinuationFrames, nameof(MaxContinuationFrames));
        HttpLimits.Positive(MaxResetsPerWindow, nameof(MaxResetsPerWindow));
        HttpLimits.PositiveTime(ResetWindow, nameof(ResetWindow));
        HttpLimits.PositiveTime(SettingsAckTimeout, nameof(SettingsAckTimeout));
        HttpLimits.PositiveTime(SendWindowTimeout, nameof(SendWindowTimeout));
        HttpLimits.PositiveTime(PrefaceTimeout, nameof(PrefaceTimeout));
        HttpLimits.PositiveTime(DrainPingTimeout, nameof(DrainPingTimeout));
        if (IdleTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException($"{nameof(Http2Limits)}.{nameof(IdleTimeout)} must be positive", nameof(IdleTimeout));
        }
    }
}
