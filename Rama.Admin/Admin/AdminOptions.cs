using System.Net;
using Rama.Admin.Options;

namespace Rama.Admin.Admin;

/// <summary>The admin endpoint (section <c>Rama:Admin</c>): where <c>pbm</c> reaches this node or lighthouse.</summary>
public sealed record AdminOptions
{
    /// <summary><c>--admin &lt;ip:port&gt;</c>: the admin endpoint's address.</summary>
    public static RamaOption BindOption { get; } = new()
    {
        Key = "Rama:Admin:Bind",
        Name = "--admin",
        Default = DefaultBind.ToString(),
        Value = OptionValue.Endpoint,
        Description = "Admin endpoint (pbm) address, ip:port (default 127.0.0.1:9110; port 0 picks one); off loopback it needs --admin-token",
    };

    /// <summary><c>--admin-token &lt;token&gt;</c>: the secret every admin request must carry.</summary>
    public static RamaOption TokenOption { get; } = new()
    {
        Key = "Rama:Admin:Token",
        Name = "--admin-token",
        Secret = true,
        Description = "Secret every pbm request must carry (pbm --token or PBM_TOKEN); required when --admin is not a loopback address",
    };

    /// <summary>The admin options, to add to an executable's declared options.</summary>
    public static IReadOnlyList<RamaOption> Declarations { get; } = [BindOption, TokenOption];

    /// <summary>127.0.0.1:9110 (ARCHITECTURE.md: defaults bind to loopback only).</summary>
    public static IPEndPoint DefaultBind => new(IPAddress.Loopback, AdminProtocol.DefaultPort);

    /// <summary>The address (<c>Rama:Admin:Bind</c>, <c>--admin</c>). Default 127.0.0.1:9110; port 0 picks a free port.</summary>
    public IPEndPoint Bind { get; init; } = DefaultBind;

    /// <summary>The token (<c>Rama:Admin:Token</c>, <c>--admin-token</c>), compared in constant time. Default none (loopback only).</summary>
    public string? Token { get; init; }

    /// <summary>Reads and validates the options: a non-loopback <see cref="Bind"/> without a token is a problem (exit 2).</summary>
    public static AdminOptions Read(OptionsReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        var bind = reader.Text(BindOption) is { } text && OptionValue.TryParseEndpoint(text, out var endpoint) ? endpoint : DefaultBind;
        var token = reader.Text(TokenOption);
        if (token is null && !IPAddress.IsLoopback(bind.Address))
        {
            reader.AddProblem($"{BindOption.Describe()} is {bind}, not a loopback address: set {TokenOption.Describe()} so that only operators " +
                              "who hold it can run admin commands (or bind the admin endpoint to 127.0.0.1)");
        }

        return new AdminOptions { Bind = bind, Token = token };
    }
}
