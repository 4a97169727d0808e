using System.IO.Pipelines;
using System.Net;
using System.Text.Json;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.ProxyProtocol;
using Rama.Proxy.Tls;

namespace Rama.Proxy.Fingerprint;

/// <summary>The addresses of the client connection, as the request's services see them (after a PROXY header, the original client's).</summary>
public sealed record PeerAddresses(IPEndPoint? Remote, IPEndPoint? Local);

/// <summary>
/// Answers every request with JSON describing it: the request line, the headers in order, the
/// client address, and for TLS the version, SNI, ALPN, cipher and the JA3/JA4 of the ClientHello,
/// plus JA4H, and for HTTP/2 the Akamai fingerprint (<c>akamai</c>) with its parts (<c>http2</c>). A debugging aid for clients (rama's <c>rama echo</c>, tls.peet.ws).
/// </summary>
public sealed class EchoService : IService<HttpRequest, HttpResponse>
{
    public static EchoService Instance { get; } = new();

    public ValueTask<HttpResponse> ServeAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(2048);
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            var peer = request.Extensions.Get<PeerAddresses>();
            json.WriteString("client", peer?.Remote?.ToString());
            json.WriteString("local", peer?.Local?.ToString());
            json.WriteString("method", request.Method);
            json.WriteString("target", request.Target);
            json.WriteString("version", request.Version switch
            {
                HttpProtocolVersion.Http10 => "HTTP/1.0",
                HttpProtocolVersion.Http2 => "HTTP/2",
                _ => "HTTP/1.1",
            });
            json.WriteStartArray("headers");
            foreach (var field in request.Headers)
            {
                json.WriteStartArray();
                json.WriteStringValue(field.NameText);
                json.WriteStringValue(field.ValueText);
                json.WriteEndArray();
            }

            json.WriteEndArray();
            var ja4h = request.Extensions.Get<Ja4H>() ?? Ja4H.Cached(request);
            json.WriteString("ja4h", ja4h.Fingerprint);
            json.WriteString("ja4h_r", ja4h.Raw);
            WriteHttp2(json, request.Extensions.Get<Http.Http2.Http2Fingerprint>());
            WriteTls(json, request.Extensions);
            WriteProxyHeader(json, request.Extensions.Get<ProxyHeader>());
            json.WriteEndObject();
        }

        var bytes = buffer.WrittenMemory;
        var response = new HttpResponse(200) { BodyLength = bytes.Length, Body = PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(bytes)) };
        response.Headers.Add("Content-Type"u8.ToArray(), "application/json"u8.ToArray());
        response.Headers.Add("Cache-Control"u8.ToArray(), "no-store"u8.ToArray());
        return ValueTask.FromResult(response);
    }

    /// <summary>The Akamai HTTP/2 fingerprint (<c>akamai</c>) and its parts (<c>http2</c>); null for HTTP/1.x.</summary>
    private static void WriteHttp2(Utf8JsonWriter json, Http.Http2.Http2Fingerprint? fingerprint)
    {
        if (fingerprint is null)
        {
            json.WriteNull("akamai");
            json.WriteNull("http2");
            return;
        }

        json.WriteString("akamai", fingerprint.Akamai);
        json.WriteStartObject("http2");
        json.WriteStartArray("settings");
        foreach (var setting in fingerprint.Settings)
        {
            json.WriteStartObject();
            json.WriteNumber("id", setting.Id);
            json.WriteNumber("value", setting.Value);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteNumber("window_update", fingerprint.WindowUpdate);
        json.WriteStartArray("priority");
        foreach (var frame in fingerprint.Priorities.Where(p => !p.InHeaders))
        {
            json.WriteStringValue(frame.ToString());
        }

        json.WriteEndArray();
        json.WriteString("pseudo_header_order", string.Join(',', fingerprint.PseudoHeaderOrder.Where(c => c != 't')));
        json.WriteEndObject();
    }

    private static void WriteTls(Utf8JsonWriter json, Extensions extensions)
    {
        var info = extensions.Get<TlsConnectionInfo>();
        var hello = extensions.Get<TlsClientHello>();
        if (info is null || hello is null)
        {
            json.WriteNull("tls");
            return;
        }

        var fingerprints = extensions.Get<TlsFingerprints>() ?? new TlsFingerprints(Ja3.From(hello), Ja4.From(hello));
        json.WriteStartObject("tls");
        json.WriteString("version", info.ProtocolText);
        json.WriteString("cipher", info.CipherSuite.ToString());
        json.WriteString("sni", hello.ServerName);
        json.WriteString("alpn", info.ApplicationProtocol);
        json.WriteStartArray("alpn_offered");
        foreach (var name in hello.ApplicationProtocolNames)
        {
            json.WriteStringValue(name);
        }

        json.WriteEndArray();
        json.WriteString("ja3", fingerprints.Ja3.Text);
        json.WriteString("ja3_hash", fingerprints.Ja3.Hash);
        json.WriteString("ja4", fingerprints.Ja4.Fingerprint);
        json.WriteString("ja4_r", fingerprints.Ja4.Raw);
        json.WriteString("client_certificate", info.ClientCertificate?.Subject);
        json.WriteEndObject();
    }

    private static void WriteProxyHeader(Utf8JsonWriter json, ProxyHeader? header)
    {
        if (header is null)
        {
            json.WriteNull("proxy_protocol");
            return;
        }

        json.WriteStartObject("proxy_protocol");
        json.WriteNumber("version", (int)header.Version);
        json.WriteBoolean("local", header.IsLocal);
        json.WriteString("source", header.Source?.ToString());
        json.WriteString("destination", header.Destination?.ToString());
        json.WriteStartArray("tlvs");
        foreach (var tlv in header.Tlvs)
        {
            json.WriteStartObject();
            json.WriteNumber("type", tlv.Type);
            json.WriteString("value", Convert.ToHexStringLower(tlv.Value));
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteEndObject();
    }
}
