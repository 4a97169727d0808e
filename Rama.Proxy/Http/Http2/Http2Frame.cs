using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;

namespace Rama.Proxy.Http.Http2;

/// <summary>RFC 9113 §6: the frame types.</summary>
public enum Http2FrameType : byte
{
    Data = 0x0,
    Headers = 0x1,
    Priority = 0x2,
    RstStream = 0x3,
    Settings = 0x4,
    PushPromise = 0x5,
    Ping = 0x6,
    GoAway = 0x7,
    WindowUpdate = 0x8,
    Continuation = 0x9,
}

/// <summary>RFC 9113 §6: frame flags (the same bit means different things per type, hence constants, not an enum).</summary>
public static class Http2Flags
{
    public const byte None = 0x0;
    /// <summary>DATA, HEADERS (§6.1, §6.2).</summary>
    public const byte EndStream = 0x1;
    /// <summary>SETTINGS, PING (§6.5, §6.7).</summary>
    public const byte Ack = 0x1;
    /// <summary>HEADERS, PUSH_PROMISE, CONTINUATION.</summary>
    public const byte EndHeaders = 0x4;
    /// <summary>DATA, HEADERS, PUSH_PROMISE.</summary>
    public const byte Padded = 0x8;
    /// <summary>HEADERS (§6.2).</summary>
    public const byte Priority = 0x20;
}

/// <summary>RFC 9113 §7: error codes of RST_STREAM and GOAWAY.</summary>
public enum Http2ErrorCode : uint
{
    NoError = 0x0,
    ProtocolError = 0x1,
    InternalError = 0x2,
    FlowControlError = 0x3,
    SettingsTimeout = 0x4,
    StreamClosed = 0x5,
    FrameSizeError = 0x6,
    RefusedStream = 0x7,
    Cancel = 0x8,
    CompressionError = 0x9,
    ConnectError = 0xa,
    EnhanceYourCalm = 0xb,
    InadequateSecurity = 0xc,
    Http11Required = 0xd,
}

/// <summary>RFC 9113 §6.5.2 and RFC 8441 §3: setting identifiers.</summary>
public enum Http2SettingId : ushort
{
    HeaderTableSize = 0x1,
    EnablePush = 0x2,
    MaxConcurrentStreams = 0x3,
    InitialWindowSize = 0x4,
    MaxFrameSize = 0x5,
    MaxHeaderListSize = 0x6,
    /// <summary>RFC 8441 §3.</summary>
    EnableConnectProtocol = 0x8,
}

/// <summary>One SETTINGS parameter as received (unknown identifiers are kept: they are part of a client's fingerprint).</summary>
public readonly record struct Http2Setting(ushort Id, uint Value)
{
    public override string ToString() => $"{Id}:{Value}";
}

/// <summary>RFC 9113 §4.1: the 9-octet frame header.</summary>
public readonly record struct Http2FrameHeader(int Length, Http2FrameType Type, byte Flags, int StreamId)
{
    public bool HasFlag(byte flag) => (Flags & flag) != 0;

    public override string ToString() => $"{Type} stream={StreamId} length={Length} flags=0x{Flags:x2}";
}

/// <summary>RFC 9113 §5.3.1, §6.3: a stream dependency (deprecated by RFC 9113 but still parsed and fingerprinted).</summary>
public readonly record struct Http2Priority(int StreamDependency, bool Exclusive, byte Weight);

/// <summary>
/// A protocol violation (RFC 9113 §5.4): a connection error (GOAWAY with <see cref="ErrorCode"/>, then close) or,
/// when <see cref="StreamId"/> is not 0, a stream error (RST_STREAM on that stream, the connection goes on).
/// </summary>
public sealed class Http2Exception : Exception
{
    public Http2Exception()
    {
    }

    public Http2Exception(string message) : base(message)
    {
    }

    public Http2Exception(string message, Exception innerException) : base(message, innerException)
    {
    }

    public Http2Exception(Http2ErrorCode errorCode, int streamId, string message) : base(message)
    {
        ErrorCode = errorCode;
        StreamId = streamId;
    }

    public Http2ErrorCode ErrorCode { get; } = Http2ErrorCode.ProtocolError;

    /// <summary>0 for a connection error, else the stream the error ends.</summary>
    public int StreamId { get; }

    public bool IsConnectionError => StreamId == 0;

    [DoesNotReturn]
    [StackTraceHidden]
    internal static void Connection(Http2ErrorCode code, string message) => throw new Http2Exception(code, 0, message);

    [DoesNotReturn]
    [StackTraceHidden]
    internal static void Stream(int streamId, Http2ErrorCode code, string message) => throw new Http2Exception(code, streamId, message);
}
