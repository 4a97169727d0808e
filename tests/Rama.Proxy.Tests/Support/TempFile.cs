namespace Rama.Proxy.Tests.Support;

/// <summary>A temporary file holding bytes for curl or nghttp to upload; deleted on dispose.</summary>
internal sealed class TempFile : IDisposable
{
    public TempFile(byte[] content)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"rama-test-{Guid.NewGuid():N}.bin");
        File.WriteAllBytes(Path, content);
    }

    public string Path { get; }

    /// <summary>A file of <paramref name="length"/> zero bytes.</summary>
    public static TempFile Zeros(int length) => new(new byte[length]);

    public void Dispose() => File.Delete(Path);
}
