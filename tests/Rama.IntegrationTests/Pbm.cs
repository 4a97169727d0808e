using System.Diagnostics;

namespace Rama.IntegrationTests;

/// <summary>Runs the built pbm (Rama.Cmd/bin/.../pbm.dll) as a real process, with a hard time limit.</summary>
internal static class Pbm
{
    public sealed record Result(int Exit, string Output, string Error, TimeSpan Elapsed)
    {
        public override string ToString() => $"exit {Exit} in {Elapsed.TotalMilliseconds:F0} ms; stdout: {Output.Trim()}; stderr: {Error.Trim()}";
    }

    public static async Task<Result> RunAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetTempPath(),
        };
        psi.ArgumentList.Add(NodeProcess.NodeDll("Rama.Cmd", "pbm"));
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }

        psi.Environment.Remove("PBM_TOKEN");
        var started = Stopwatch.StartNew();
        using var process = Process.Start(psi)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"pbm {string.Join(' ', args)} did not finish within 30 s");
        }

        return new Result(process.ExitCode, await output, await error, started.Elapsed);
    }
}
