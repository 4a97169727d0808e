using System.Reflection;
using System.Text.RegularExpressions;

namespace Rama.Actors.Tests.Architecture;

/// <summary>
/// The map's dependency rules (../shared/ARCHITECTURE.md): projects only point downward (Rama.Proxy knows nothing of
/// actors; Rama.Admin nothing of proxies), and inside a project the folders (namespaces) have no cycles.
/// </summary>
public sealed partial class DependencyTests
{
    private static readonly Assembly Proxy = typeof(Rama.Proxy.Core.Unit).Assembly;
    private static readonly Assembly Actors = typeof(Rama.Actors.Hosting.RamaSettings).Assembly;
    private static readonly Assembly Admin = typeof(Rama.Admin.Options.OptionsReader).Assembly;

    private static IEnumerable<string> References(Assembly assembly) => assembly.GetReferencedAssemblies().Select(a => a.Name!);

    [Fact]
    public void Rama_Proxy_references_no_actor_engine_and_nothing_above_it()
    {
        var bad = References(Proxy).Where(n => n.StartsWith("Akka", StringComparison.Ordinal) || n is "Rama.Actors" or "Rama.Admin").ToList();
        Assert.True(bad.Count == 0, "Rama.Proxy references " + string.Join(", ", bad));
    }

    [Fact]
    public void Rama_Admin_references_no_proxy_code()
    {
        var bad = References(Admin).Where(n => n is "Rama.Proxy" or "Rama.Actors").ToList();
        Assert.True(bad.Count == 0, "Rama.Admin references " + string.Join(", ", bad));
    }

    [Fact]
    public void Rama_Actors_sits_on_Akka_Rama_Admin_and_Rama_Proxy_and_nothing_above()
    {
        var references = References(Actors).ToList();
        Assert.Contains("Akka", references);
        Assert.Contains("Rama.Proxy", references);
        Assert.Contains("Rama.Admin", references);
        Assert.DoesNotContain(references, n => n.StartsWith("rama-", StringComparison.Ordinal) || n == "Rama.Node");
    }

    [Fact]
    public void Rama_Cmd_references_no_Akka_and_no_proxy_code()
    {
        // pbm links the admin protocol's one file and talks JSON over TCP: nothing of the fleet's runtime comes with it.
        var configuration = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
        var pbm = Path.Combine(RepoRoot(), "Rama.Cmd", "bin", configuration, "net10.0", "pbm.dll");
        using var stream = File.OpenRead(pbm);
        using var pe = new System.Reflection.PortableExecutable.PEReader(stream);
        var metadata = System.Reflection.Metadata.PEReaderExtensions.GetMetadataReader(pe);
        var references = metadata.AssemblyReferences.Select(h => metadata.GetString(metadata.GetAssemblyReference(h).Name)).ToList();
        var bad = references.Where(n => n.StartsWith("Akka", StringComparison.Ordinal) || n.StartsWith("Rama.", StringComparison.Ordinal)).ToList();
        Assert.True(bad.Count == 0, "pbm references " + string.Join(", ", bad));
        var project = File.ReadAllText(Path.Combine(RepoRoot(), "Rama.Cmd", "Rama.Cmd.csproj"));
        Assert.DoesNotMatch(@"(PackageReference|ProjectReference)\s+Include=""[^""]*(Akka|Rama\.Proxy|Rama\.Actors|Rama\.Admin\.csproj)", project);
    }

    [Theory]
    [InlineData("Rama.Proxy")]
    [InlineData("Rama.Actors")]
    [InlineData("Rama.Admin")]
    public void Folders_of_a_project_have_no_dependency_cycle(string project)
    {
        var graph = FolderGraph(project);
        Assert.NotEmpty(graph);
        var cycle = FindCycle(graph);
        Assert.True(cycle is null, $"{project}: folders depend on each other in a cycle: {string.Join(" -> ", cycle ?? [])}");
    }

    /// <summary>Folder (namespace under the project) to the folders its code names, from the sources (comments and strings removed).</summary>
    private static Dictionary<string, HashSet<string>> FolderGraph(string project)
    {
        var root = Path.Combine(RepoRoot(), project);
        var graph = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var file in Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains("/obj/", StringComparison.Ordinal) || file.Contains("/bin/", StringComparison.Ordinal))
            {
                continue;
            }

            var code = CommentsAndStrings().Replace(File.ReadAllText(file), " ");
            var ns = NamespaceDeclaration().Match(code);
            if (!ns.Success)
            {
                continue;
            }

            var from = Folder(project, ns.Groups[1].Value);
            if (!graph.TryGetValue(from, out var edges))
            {
                graph[from] = edges = new HashSet<string>(StringComparer.Ordinal);
            }

            foreach (Match reference in QualifiedName().Matches(code))
            {
                var name = reference.Groups[1].Value;
                if (name.StartsWith(project + ".", StringComparison.Ordinal) && Folder(project, name) is var to && to != from && to.Length > 0)
                {
                    edges.Add(to);
                }
            }
        }

        return graph;
    }

    private static string Folder(string project, string name)
    {
        var rest = name.Length > project.Length ? name[(project.Length + 1)..] : "";
        var dot = rest.IndexOf('.', StringComparison.Ordinal);
        return dot < 0 ? rest : rest[..dot];
    }

    private static List<string>? FindCycle(Dictionary<string, HashSet<string>> graph)
    {
        var state = new Dictionary<string, int>(StringComparer.Ordinal);
        var path = new List<string>();
        List<string>? Visit(string node)
        {
            state[node] = 1;
            path.Add(node);
            foreach (var next in graph.GetValueOrDefault(node) ?? [])
            {
                if (state.GetValueOrDefault(next) == 1)
                {
                    return [.. path[path.IndexOf(next)..], next];
                }

                if (state.GetValueOrDefault(next) == 0 && Visit(next) is { } found)
                {
                    return found;
                }
            }

            path.RemoveAt(path.Count - 1);
            state[node] = 2;
            return null;
        }

        foreach (var node in graph.Keys.Order(StringComparer.Ordinal))
        {
            if (state.GetValueOrDefault(node) == 0 && Visit(node) is { } cycle)
            {
                return cycle;
            }
        }

        return null;
    }

    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Rama.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("Rama.sln not found above " + AppContext.BaseDirectory);
    }

    // Line and block comments, verbatim/raw/regular strings and char literals (so names in log categories and docs do not count).
    [GeneratedRegex(@"//[^\n]*|/\*.*?\*/|"""""".*?""""""|@""(?:[^""]|"""")*""|""(?:[^""\\\n]|\\.)*""|'(?:[^'\\\n]|\\.)+'", RegexOptions.Singleline)]
    private static partial Regex CommentsAndStrings();

    [GeneratedRegex(@"^\s*namespace\s+([\w.]+)", RegexOptions.Multiline)]
    private static partial Regex NamespaceDeclaration();

    [GeneratedRegex(@"\b(Rama\.[A-Z]\w*\.[A-Z]\w*)")]
    private static partial Regex QualifiedName();
}
