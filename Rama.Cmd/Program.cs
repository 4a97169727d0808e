using System.Runtime.InteropServices;
using Rama.Cmd;

// pbm [host:port] <palette> <command> [args] [--json] [--token T]: see PbmCommand.Usage.
using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true; // Ctrl+C ends a tail cleanly (exit 0), not the process at once
    stop.Cancel();
};
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
{
    context.Cancel = true;
    stop.Cancel();
});
return await new PbmCommand(Console.Out, Console.Error, Environment.GetEnvironmentVariable).RunAsync(args, stop.Token).ConfigureAwait(false);
