using System.Buffers;
using System.Runtime.CompilerServices;
using Rama.Proxy.Http;
using Rama.Proxy.Net;

namespace Rama.Proxy.Fingerprint;

/// <summary>
/// A connection's last JA4H with the inputs it was computed from. The requests of one connection nearly always repeat the
/// same method, header names, cookies and Accept-Language, so the next request with the same inputs takes the same
/// fingerprint without computing it again. Thread-safe (the streams of an h2 connection run at once): the entry is
/// immutable and replaced whole.
/// </summary>
internal sealed class Ja4HCache
{
    /// <summary>Inputs longer than this (a request with kilobytes of cookies) are not cached: computed each time.</summary>
    private const int MaxKeyBytes = 4096;

    // Kept beside the connection, not in it (Net sits below Fingerprint), and gone with it.
    private static readonly ConditionalWeakTable<ConnectionContext, Ja4HCache> Caches = new();

    private Entry? _last;

    /// <summary>The cache of <paramref name="connection"/> (created on first use; shared by the streams of an h2 connection).</summary>
    public static Ja4HCache Of(ConnectionContext connection) => Caches.GetValue(connection, static _ => new Ja4HCache());

    public Ja4H Get(HttpRequest request)
    {
        var length = KeyLength(request);
        if (length > MaxKeyBytes)
        {
            return Ja4H.From(request);
        }

        var rented = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            var key = rented.AsSpan(0, length);
            WriteKey(request, key);
            var last = Volatile.Read(ref _last);
            if (last is not null && key.SequenceEqual(last.Key))
            {
                return last.Value;
            }

            var value = Ja4H.From(request);
            Volatile.Write(ref _last, new Entry(key.ToArray(), value));
            return value;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    internal static bool Latin1Equals(ReadOnlySpan<byte> bytes, string text)
    {
        if (bytes.Length != text.Length)
        {
            return false;
        }

        for (var i = 0; i < bytes.Length; i++)
        {
            if (bytes[i] != text[i])
            {
                return false;
            }
        }

        return true;
    }

    // The key: method, version, whether the first (Host) field is skipped, then per field its name, and for Cookie and
    // Accept-Language also its value (a Referer's value does not count: only that one was sent). Lengths delimit the parts,
    // so no two different inputs write the same bytes.
    private static int KeyLength(HttpRequest request)
    {
        var length = 4 + request.Method.Length;
        foreach (var field in request.Headers)
        {
            length += 2 + field.Name.Length + (HasCountedValue(field) ? 4 + field.Value.Length : 0);
        }

        return length;
    }

    private static void WriteKey(HttpRequest request, Span<byte> key)
    {
        var at = 0;
        var method = request.Method;
        key[at++] = (byte)request.Version;
        key[at++] = Ja4H.HasSynthesizedHost(request) ? (byte)1 : (byte)0;
        key[at++] = (byte)(method.Length >> 8);
        key[at++] = (byte)method.Length;
        foreach (var c in method)
        {
            key[at++] = (byte)c;
        }

        foreach (var field in request.Headers)
        {
            key[at++] = (byte)(field.Name.Length >> 8);
            key[at++] = (byte)field.Name.Length;
            field.Name.Span.CopyTo(key[at..]);
            at += field.Name.Length;
            if (HasCountedValue(field))
            {
                var n = field.Value.Length;
                key[at++] = (byte)(n >> 24);
                key[at++] = (byte)(n >> 16);
                key[at++] = (byte)(n >> 8);
                key[at++] = (byte)n;
                field.Value.Span.CopyTo(key[at..]);
                at += n;
            }
        }
    }

    private static bool HasCountedValue(HttpHeaderField field) => field.NameIs("Cookie"u8) || field.NameIs("Accept-Language"u8);

    private sealed record Entry(byte[] Key, Ja4H Value);
}
