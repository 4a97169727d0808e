using System.CommandLine;
using Rama.Admin.Options;

namespace Rama.Actors.Options;

/// <summary>rama-node's command line: every declared option, <c>config show</c>, <c>--version</c> and <c>ca export</c>.</summary>
public sealed class NodeCommandLine
{
    public const string Tool = "rama-node";

    public NodeCommandLine()
    {
        CommandLine = new RamaCommandLine(Tool, "Rama proxy node: an HTTP forward proxy (absolute-form and CONNECT) and a SOCKS5 proxy on one port, " +
                                                "reverse proxy, TLS termination and echo listeners", NodeOptionDeclarations.All);
        // rama-node ca export [--mitm-ca-dir DIR]: prints the MITM CA certificate (PEM), creating the CA on first use.
        // --mitm-ca-dir (and --config, the environment) are the root's options, recursive.
        CaExport = new Command("export", "Print the MITM CA certificate (PEM) for clients to trust; creates the CA in --mitm-ca-dir when absent");
        CaExport.SetAction(_ => ExitCodes.Ok);
        CommandLine.Add(new Command("ca", "MITM certificate authority") { CaExport });
    }

    public RamaCommandLine CommandLine { get; }

    /// <summary>The <c>ca export</c> command.</summary>
    public Command CaExport { get; }
}
