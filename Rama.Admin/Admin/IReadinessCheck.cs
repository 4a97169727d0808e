namespace Rama.Admin.Admin;

/// <summary>
/// One condition of <c>GET /readyz</c> on the admin endpoint. The endpoint is ready when every registered check answers
/// null; otherwise it answers 503 with the first reason. Register one with
/// <c>services.TryAddEnumerable(ServiceDescriptor.Singleton&lt;IReadinessCheck, MyCheck&gt;())</c>.
/// </summary>
public interface IReadinessCheck
{
    /// <summary>Null when ready; else a short reason for people (one line, e.g. "listener 'proxy' is not bound").</summary>
    ValueTask<string?> NotReadyReasonAsync(CancellationToken cancellationToken);
}
