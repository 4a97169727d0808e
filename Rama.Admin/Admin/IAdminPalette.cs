namespace Rama.Admin.Admin;

/// <summary>One command of a palette, as <c>pbm help</c> lists it.</summary>
/// <param name="Name">The command (<c>show</c>).</param>
/// <param name="Arguments">Its arguments for the usage line (<c>&lt;address&gt;</c>), empty when none.</param>
/// <param name="Description">One sentence.</param>
public sealed record AdminCommandInfo(string Name, string Arguments, string Description);

/// <summary>
/// A palette of admin commands (<c>pbm [host:port] &lt;palette&gt; &lt;command&gt; [args]</c>). Register one with
/// <c>services.AddSingleton&lt;IAdminPalette, MyPalette&gt;()</c>; the admin endpoint serves every registered palette.
/// </summary>
public interface IAdminPalette
{
    /// <summary>The palette's name (<c>cluster</c>); unique per endpoint.</summary>
    string Name { get; }

    /// <summary>What the palette does, for <c>pbm help</c>.</summary>
    string Description { get; }

    /// <summary>Its commands; the endpoint refuses any other before calling <see cref="ExecuteAsync"/>.</summary>
    IReadOnlyList<AdminCommandInfo> Commands { get; }

    /// <summary>
    /// Runs <paramref name="request"/> (its command is one of <see cref="Commands"/>), writing frames to
    /// <paramref name="response"/>; returns the exit code (<see cref="AdminExitCodes"/>). <paramref name="cancellationToken"/>
    /// is cancelled when the client goes away or the endpoint closes: a streaming command (<c>tail</c>) runs until then.
    /// </summary>
    ValueTask<int> ExecuteAsync(AdminRequest request, IAdminResponse response, CancellationToken cancellationToken);
}

/// <summary>Where a palette writes its answer; frames go out in order, each as one line.</summary>
public interface IAdminResponse
{
    ValueTask WriteAsync(AdminFrame frame, CancellationToken cancellationToken = default);
}

/// <summary>Shorthands for writing frames.</summary>
public static class AdminResponseExtensions
{
    public static ValueTask TableAsync(this IAdminResponse response, string name, IReadOnlyList<string> columns, IReadOnlyList<IReadOnlyList<string>> rows, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(response);
        return response.WriteAsync(AdminFrame.Table(name, columns, rows), cancellationToken);
    }

    public static ValueTask ValuesAsync(this IAdminResponse response, IReadOnlyDictionary<string, string> fields, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(response);
        return response.WriteAsync(AdminFrame.Values(fields), cancellationToken);
    }

    public static ValueTask TextAsync(this IAdminResponse response, string text, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(response);
        return response.WriteAsync(AdminFrame.Line(text), cancellationToken);
    }

    /// <summary>Writes an error frame and returns <paramref name="exit"/> (default <see cref="AdminExitCodes.Failed"/>), for <c>return await response.FailAsync(..)</c>.</summary>
    public static async ValueTask<int> FailAsync(this IAdminResponse response, string message, int exit = AdminExitCodes.Failed, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(response);
        await response.WriteAsync(AdminFrame.Error(message), cancellationToken).ConfigureAwait(false);
        return exit;
    }
}
