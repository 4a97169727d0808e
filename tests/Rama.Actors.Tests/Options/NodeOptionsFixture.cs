using System.Collections;
using Rama.Actors.Options;
using Rama.Admin.Options;

namespace Rama.Actors.Tests.Options;

/// <summary>
/// Reads node options as rama-node does (command line, a <c>--config</c> file, environment variables) in a temporary
/// directory of its own, removed on dispose: the set-up the node-option test classes share.
/// </summary>
internal sealed class NodeOptionsFixture(string name) : IDisposable
{
    public string Directory { get; } = System.IO.Directory.CreateTempSubdirectory(name).FullName;

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);

    /// <summary>The options, the problems found, and the reader (for the effective values); <paramref name="json"/> becomes a <c>--config</c> file.</summary>
    public (NodeOptions Options, IReadOnlyList<string> Problems, OptionsReader Reader) Read(string[] args, string? json = null, Hashtable? environment = null)
    {
        if (json is not null)
        {
            var path = Path.Combine(Directory, "node.json");
            File.WriteAllText(path, json);
            args = [.. args, "--config", path];
        }

        var parsed = new NodeCommandLine().CommandLine.Parse(args);
        Assert.Empty(parsed.Errors);
        var reader = new OptionsReader(RamaConfiguration.Build(Directory, parsed, environment ?? new Hashtable()), NodeOptionDeclarations.All);
        return (NodeOptions.Read(reader), reader.Problems, reader);
    }
}
