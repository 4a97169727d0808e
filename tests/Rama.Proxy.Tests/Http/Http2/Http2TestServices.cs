using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Net;

namespace Rama.Proxy.Tests.Http.Http2;

/// <summary>The application the HTTP/2 tests serve: /hello, /echo (request body streamed back), /big (1 MiB), /trailers, /slow.</summary>
internal static class Http2TestServices
{
    public static readonly byte[] Big = Enumerable.Range(0, 1024 * 1024).Select(i => (byte)(i * 7 + (i >> 10))).ToArray();

    public static IService<HttpRequest, HttpResponse> Application(TaskCompletionSource? slowGate = null) => Service.FromFunc<HttpRequest, HttpResponse>(async (request, ct) =>
    {
        var path = request.Target.Split('?')[0];
        switch (path)
        {
            case "/echo":
                return new HttpResponse(200) { Body = request.Body };
            case "/big":
                return new HttpResponse(200) { Body = PipeReader.Create(new ReadOnlySequence<byte>(Big)), BodyLength = Big.Length };
            case "/trailers":
            {
                var response = new HttpResponse(200) { Body = PipeReader.Create(new ReadOnlySequence<byte>("grpc-ish"u8.ToArray())) };
                var trailers = new HttpHeaders();
                trailers.Add("grpc-status", "0");
                response.Trailers = trailers;
                return response;
            }
            case "/slow":
                if (slowGate is not null)
                {
                    await slowGate.Task.WaitAsync(ct);
                }

                return HttpResponse.Text(200, "slow done");
            case "/info":
            {
                var info = request.Extensions.Get<Http2RequestInfo>();
                var fingerprint = request.Extensions.Get<Http2Fingerprint>();
                return HttpResponse.Text(200, $"{request.Version} {request.Method} {request.Target} {info?.Scheme} {info?.Authority} {request.Headers.GetText("host")} {fingerprint?.Akamai}");
            }
            default:
                return HttpResponse.Text(200, "hello h2");
        }
    });

    /// <summary>An h2c (prior knowledge) server on 127.0.0.1:0.</summary>
    public static TcpServer StartServer(IService<HttpRequest, HttpResponse>? application = null, Http2Limits? limits = null)
    {
        var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Start(Http2Server.Create(application ?? Application(), limits));
        return server;
    }
}
