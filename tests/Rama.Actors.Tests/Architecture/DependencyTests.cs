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

    /// <summary>
    /// Edges that still close cycles, each against the data path's direction (a lower folder naming a higher one), to be
    /// removed by moving the type named: the test ignores them when it looks for cycles, and fails when one is gone (so the
    /// list only shrinks) or when any other edge closes a cycle.
    /// </summary>
    private static readonly Dictionary<string, (string From, string To)[]> KnownBackEdges = new(StringComparer.Ordinal)
    {
        ["Rama.Proxy"] =
        [
            ("Fingerprint", "Http"), // EchoService (a web app answering with the fingerprints) belongs above Http
            ("Fingerprint", "Tls"), // EchoService reads TlsConnectionInfo
            ("Limits", "Http"), // UserLimitLayer is an HTTP layer
            ("Tls", "Http"), // TlsOrigin uses Http's OriginSecurer
            ("Upstream", "Http"), // UpstreamHttpLayer is an HTTP layer
            ("Socks5", "Upstream"), // Socks5Service selects an upstream; the SOCKS5 client is used by Upstream's connector
        ],
        ["Rama.Actors"] =
        [
            ("Hosting", "Admin"), // FleetHostingExtensions registers Admin's ShardingMetrics
        ],
        ["Rama.Admin"] = [],
    };

    [Theory]
    [InlineData("Rama.Proxy")]
    [InlineData("Rama.Actors")]
    [InlineData("Rama.Admin")]
    public void Folders_of_a_project_have_no_dependency_cycle(string project)
    {
        var graph = FolderGraph(project);
        Assert.NotEmpty(graph);
        foreach (var (from, to) in KnownBackEdges[project])
        {
            Assert.True(graph[from].Remove(to), $"{project}: {from} no longer depends on {to}: take the edge off KnownBackEdges");
        }

        var tangled = StronglyConnected(graph);
        Assert.True(tangled.Count == 0, $"{project}: folders depend on each other in a cycle:\n{string.Join("\n", tangled.Select(c => Describe(graph, c)))}");
    }

    [Fact]
    public void Observability_and_the_folders_below_it_sit_on_leaves_only()
    {
        // The instruments (Metrics) are a leaf that Net, Tls, Upstream and ProxyProtocol record to; Observability (tracing,
        // access log, request metrics) sits on Core, Metrics and Net; Net on Core and Metrics (ARCHITECTURE.md: no cycles).
        var graph = FolderGraph("Rama.Proxy");
        Assert.Empty(graph["Core"].Keys);
        Assert.Empty(graph["Metrics"].Keys);
        Assert.Equal(["Core", "Metrics"], graph["Net"].Keys.Order(StringComparer.Ordinal));
        var above = graph["Observability"].Keys.Except(["Core", "Metrics", "Net"]).ToList();
        Assert.True(above.Count == 0, "Observability depends on " + string.Join(", ", above.Select(f => $"{f} ({graph["Observability"][f]})")));
    }

    [Fact]
    public void The_folder_graph_sees_names_used_without_their_namespace()
    {
        // Http's code names ConnectionContext (Net) through `using Rama.Proxy.Net;` only: the compiled metadata still shows the edge.
        var graph = FolderGraph("Rama.Proxy");
        Assert.Contains("Net", graph["Http"].Keys);
        Assert.Contains("Core", graph["Net"].Keys);
    }

    /// <summary>
    /// Folder (namespace under the project) to the folders its code uses, each edge with one example ("A.Type uses B.Type"):
    /// read from the compiled assembly (so names imported with <c>using</c> or written relative to the enclosing namespace
    /// count), and from the sources for what compiles away (constants, <c>nameof</c>) when written fully qualified.
    /// </summary>
    private static Dictionary<string, Dictionary<string, string>> FolderGraph(string project)
    {
        var graph = new Dictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        void Edge(string from, string to, string example)
        {
            if (from.Length == 0)
            {
                return;
            }

            if (!graph.TryGetValue(from, out var edges))
            {
                graph[from] = edges = new Dictionary<string, string>(StringComparer.Ordinal);
            }

            if (to.Length > 0 && to != from)
            {
                edges.TryAdd(to, example);
            }
        }

        var assembly = project switch
        {
            "Rama.Proxy" => Proxy,
            "Rama.Actors" => Actors,
            "Rama.Admin" => Admin,
            _ => throw new ArgumentOutOfRangeException(nameof(project)),
        };
        foreach (var (from, to) in AssemblyDependencies.TypeEdges(assembly.Location))
        {
            Edge(Folder(project, from.Namespace), Folder(project, to.Namespace), $"{from} uses {to}");
        }

        var root = Path.Combine(RepoRoot(), project);
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
            foreach (Match reference in QualifiedName().Matches(code))
            {
                Edge(from, Folder(project, reference.Groups[1].Value), $"{Path.GetRelativePath(root, file)} names {reference.Groups[1].Value}");
            }
        }

        return graph;
    }

    /// <summary>The sets of two or more folders that all reach each other (each one a cycle or several).</summary>
    private static List<List<string>> StronglyConnected(Dictionary<string, Dictionary<string, string>> graph)
    {
        HashSet<string> Reach(string start)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var stack = new Stack<string>([start]);
            while (stack.TryPop(out var node))
            {
                foreach (var next in graph.GetValueOrDefault(node)?.Keys ?? Enumerable.Empty<string>())
                {
                    if (seen.Add(next))
                    {
                        stack.Push(next);
                    }
                }
            }

            return seen;
        }

        var reach = graph.Keys.ToDictionary(n => n, Reach, StringComparer.Ordinal);
        var done = new HashSet<string>(StringComparer.Ordinal);
        var components = new List<List<string>>();
        foreach (var node in graph.Keys.Order(StringComparer.Ordinal))
        {
            if (done.Contains(node) || !reach[node].Contains(node))
            {
                continue;
            }

            var component = reach[node].Where(m => reach.TryGetValue(m, out var back) && back.Contains(node)).Order(StringComparer.Ordinal).ToList();
            done.UnionWith(component);
            components.Add(component);
        }

        return components;
    }

    /// <summary>A component's folders and every edge inside it with its example.</summary>
    private static string Describe(Dictionary<string, Dictionary<string, string>> graph, List<string> component) =>
        $"  {{{string.Join(", ", component)}}}:\n" + string.Join("\n",
            from a in component
            from edge in graph[a]
            where component.Contains(edge.Key)
            select $"    {a} -> {edge.Key}: {edge.Value}");

    private static string Folder(string project, string name)
    {
        if (!name.StartsWith(project + ".", StringComparison.Ordinal))
        {
            return "";
        }

        var rest = name[(project.Length + 1)..];
        var dot = rest.IndexOf('.', StringComparison.Ordinal);
        return dot < 0 ? rest : rest[..dot];
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
