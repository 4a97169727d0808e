using System.ComponentModel;
using System.Text.Json;
using System.Text.RegularExpressions;
using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>
/// docker-compose.yml and deploy/Dockerfile without a Docker engine: docker-compose validates the file and prints it
/// normalized (anchors merged, variables at their defaults), and the tests read that: every node joins through the
/// lighthouse, the members share one secret defined once, published host ports are distinct and on loopback, the
/// proxies need auth, the reverse listeners reach the origin, the images run as a non-root user with pbm on PATH,
/// and the executables accept the command lines and environments the file gives them.
/// </summary>
public sealed partial class DeployTests
{
    private static readonly string[] Nodes = ["node1", "node2", "node3"];
    private static readonly string[] Members = ["lighthouse", .. Nodes];

    private static string ComposeFile => Path.Combine(NodeProcess.RepoRoot, "docker-compose.yml");

    private static string Dockerfile => Path.Combine(NodeProcess.RepoRoot, "deploy", "Dockerfile");

    [Fact]
    public async Task Compose_file_validates_with_docker_compose_config()
    {
        var result = await DockerComposeAsync("config", "-q");
        Assert.True(result.ExitCode == 0, $"docker-compose config -q exited {result.ExitCode}:\n{result.Stderr}");
    }

    [Fact]
    public async Task Compose_has_a_lighthouse_three_nodes_and_an_origin()
    {
        var services = (await ComposeConfigAsync()).GetProperty("services");
        Assert.Equal(["lighthouse", "node1", "node2", "node3", "origin"], services.EnumerateObject().Select(s => s.Name).Order(StringComparer.Ordinal));
        Assert.StartsWith("nginx:", services.GetProperty("origin").GetProperty("image").GetString(), StringComparison.Ordinal);
        foreach (var name in Members)
        {
            var service = services.GetProperty(name);
            Assert.True(service.TryGetProperty("restart", out var restart) && restart.GetString() is "unless-stopped" or "always",
                $"{name} has no restart policy");
        }
    }

    [Fact]
    public async Task Every_node_joins_through_the_lighthouse()
    {
        var services = (await ComposeConfigAsync()).GetProperty("services");
        var lighthouse = Environment(services.GetProperty("lighthouse"));
        Assert.Equal("lighthouse", lighthouse["CLUSTER_IP"]);
        var seed = $"lighthouse:{lighthouse["CLUSTER_PORT"]}";
        Assert.Equal([seed], Seeds(lighthouse));
        foreach (var name in Nodes)
        {
            var service = services.GetProperty(name);
            var env = Environment(service);
            Assert.Equal([seed], Seeds(env));
            Assert.Equal(name, env["CLUSTER_IP"]);
            Assert.Contains("lighthouse", DependsOn(service));
        }

        static string[] Seeds(IReadOnlyDictionary<string, string> env) =>
            env["CLUSTER_SEEDS"].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    [Fact]
    public async Task Members_share_one_secret_defined_once()
    {
        var services = (await ComposeConfigAsync()).GetProperty("services");
        var secrets = Members.Select(name => Environment(services.GetProperty(name)).GetValueOrDefault("CLUSTER_SECRET")).ToList();
        Assert.All(secrets, s => Assert.False(string.IsNullOrEmpty(s), "a member has no CLUSTER_SECRET"));
        var secret = Assert.Single(secrets.Distinct());
        Assert.True(secret!.Length >= 16, "the cluster secret has fewer than 16 characters");
        Assert.False(Environment(services.GetProperty("origin")).ContainsKey("CLUSTER_SECRET"), "the origin holds the cluster secret");

        // One definition in the file (an anchor merged into every member), and no other way of setting it.
        var text = await File.ReadAllTextAsync(ComposeFile);
        Assert.Single(SecretDefinition().Matches(text));
        Assert.DoesNotContain("--cluster-secret", text, StringComparison.Ordinal);
        Assert.DoesNotContain("Rama__Cluster__Secret", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Published_host_ports_are_distinct_and_on_loopback()
    {
        var services = (await ComposeConfigAsync()).GetProperty("services");
        var published = services.EnumerateObject().SelectMany(s => Ports(s.Value).Select(p => (Service: s.Name, Port: p))).ToList();
        Assert.NotEmpty(published);
        Assert.All(published, p => Assert.True(p.Port.HostIp == "127.0.0.1", $"{p.Service} publishes {p.Port.Published} on {p.Port.HostIp ?? "every interface"}"));
        var duplicates = published.GroupBy(p => p.Port.Published).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        Assert.True(duplicates.Count == 0, "host ports published twice: " + string.Join(", ", duplicates));
        foreach (var name in Nodes)
        {
            // Each node's proxy (8080 in the container) and reverse listener (8090) reach the host.
            var targets = Ports(services.GetProperty(name)).Select(p => p.Target).ToList();
            Assert.Contains(8080, targets);
            Assert.Contains(8090, targets);
        }
    }

    [Fact]
    public async Task Node_proxies_need_auth_and_reverse_listeners_reach_the_origin()
    {
        var services = (await ComposeConfigAsync()).GetProperty("services");
        var originConf = await File.ReadAllTextAsync(Path.Combine(NodeProcess.RepoRoot, "deploy", "origin", "default.conf"));
        Assert.Matches(@"listen\s+80;", originConf);
        foreach (var name in Nodes)
        {
            var command = Command(services.GetProperty(name));
            var listen = ValuesOf(command, "--listen");
            Assert.Equal(["0.0.0.0:8080"], listen);
            Assert.NotEmpty(ValuesOf(command, "--auth"));
            Assert.DoesNotContain("--allow-open-proxy", command);
            Assert.Equal(["0.0.0.0:8090=origin:80"], ValuesOf(command, "--reverse"));
            Assert.Contains("origin", DependsOn(services.GetProperty(name)));
        }
    }

    [Fact]
    public async Task Images_build_from_the_official_dotnet_images_and_run_as_non_root_with_pbm_on_path()
    {
        var stages = ParseDockerfile(await File.ReadAllLinesAsync(Dockerfile));
        Assert.Equal("mcr.microsoft.com/dotnet/sdk:10.0", stages["build"].From);
        Assert.Contains(stages["build"].Instructions, i => i.StartsWith("RUN ", StringComparison.Ordinal) && i.Contains("dotnet publish", StringComparison.Ordinal) && i.Contains("-c Release", StringComparison.Ordinal));
        var services = (await ComposeConfigAsync()).GetProperty("services");
        var expected = new Dictionary<string, (string Project, string Assembly)>
        {
            ["lighthouse"] = ("Rama.Lighthouse", "rama-lighthouse"),
            ["node1"] = ("Rama.Node", "rama-node"),
            ["node2"] = ("Rama.Node", "rama-node"),
            ["node3"] = ("Rama.Node", "rama-node"),
        };
        foreach (var (service, (project, assembly)) in expected)
        {
            var build = services.GetProperty(service).GetProperty("build");
            Assert.Equal("deploy/Dockerfile", build.GetProperty("dockerfile").GetString());
            var target = build.GetProperty("target").GetString()!;
            var chain = Chain(stages, target);

            // The ASP.NET Core runtime image: both executables reference Microsoft.AspNetCore.App.
            Assert.Equal("mcr.microsoft.com/dotnet/aspnet:10.0", chain[^1].From);
            var csproj = await File.ReadAllTextAsync(Path.Combine(NodeProcess.RepoRoot, project, project + ".csproj"));
            Assert.Contains("Microsoft.AspNetCore.App", csproj, StringComparison.Ordinal);
            Assert.Contains($"<AssemblyName>{assembly}</AssemblyName>", csproj, StringComparison.Ordinal);

            var user = chain.Select(s => s.Instructions.LastOrDefault(i => i.StartsWith("USER ", StringComparison.Ordinal))).FirstOrDefault(u => u is not null);
            Assert.True(user is not null, $"target {target} sets no USER (it would run as root)");
            Assert.DoesNotMatch(@"^USER\s+(root|0)(:|$)", user);

            var entrypoint = chain.Select(s => s.Instructions.LastOrDefault(i => i.StartsWith("ENTRYPOINT ", StringComparison.Ordinal))).First(e => e is not null)!;
            Assert.Contains($"{assembly}.dll", entrypoint, StringComparison.Ordinal);
            Assert.Contains(chain.SelectMany(s => s.Instructions), i => i.Contains("/usr/local/bin/pbm", StringComparison.Ordinal) && i.Contains("pbm.dll", StringComparison.Ordinal));
        }

        // Every project file the restore layer copies exists (a renamed project breaks the image build, not only the solution).
        foreach (var copy in stages["build"].Instructions.Where(i => i.StartsWith("COPY ", StringComparison.Ordinal) && i.Contains(".csproj", StringComparison.Ordinal)))
        {
            var source = copy.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
            Assert.True(File.Exists(Path.Combine(NodeProcess.RepoRoot, source)), $"the Dockerfile copies {source}, which does not exist");
        }
    }

    [Fact]
    public async Task Dockerignore_keeps_build_output_and_git_out_of_the_context()
    {
        var lines = (await File.ReadAllLinesAsync(Path.Combine(NodeProcess.RepoRoot, ".dockerignore"))).Select(l => l.Trim()).ToHashSet();
        Assert.Contains("**/bin/", lines);
        Assert.Contains("**/obj/", lines);
        Assert.Contains("**/TestResults/", lines);
        Assert.Contains(".git/", lines);
    }

    /// <summary>
    /// Each member's command line and environment from the file, given to the real executable with <c>config show</c>:
    /// every option parses and validates (a container's CLUSTER_IP name, the secret, auth on 0.0.0.0), exit 0.
    /// </summary>
    [Fact]
    public async Task Executables_accept_the_compose_command_lines_and_environments()
    {
        var services = (await ComposeConfigAsync()).GetProperty("services");
        foreach (var name in Members)
        {
            var service = services.GetProperty(name);
            var (project, assembly) = name == "lighthouse" ? ("Rama.Lighthouse", "rama-lighthouse") : ("Rama.Node", "rama-node");
            var psi = new System.Diagnostics.ProcessStartInfo("dotnet")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
                WorkingDirectory = Path.GetTempPath(),
            };
            psi.ArgumentList.Add(NodeProcess.NodeDll(project, assembly));
            foreach (var arg in Command(service))
            {
                psi.ArgumentList.Add(arg);
            }

            psi.ArgumentList.Add("config");
            psi.ArgumentList.Add("show");
            foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("CLUSTER_", StringComparison.Ordinal) || k.StartsWith("Rama__", StringComparison.Ordinal)).ToList())
            {
                psi.Environment.Remove(key);
            }

            foreach (var (key, value) in Environment(service))
            {
                psi.Environment[key] = value;
            }

            using var process = System.Diagnostics.Process.Start(psi)!;
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var stdout = process.StandardOutput.ReadToEndAsync(cts.Token);
            var stderr = process.StandardError.ReadToEndAsync(cts.Token);
            await process.WaitForExitAsync(cts.Token);
            var output = await stdout + await stderr;
            Assert.True(process.ExitCode == 0, $"{name}: {assembly} {string.Join(' ', psi.ArgumentList.Skip(1))} exited {process.ExitCode}:\n{output}");
            Assert.DoesNotContain(Environment(service)["CLUSTER_SECRET"], output, StringComparison.Ordinal);
        }
    }

    // ------------------------------------------------------------------------------------------------ compose

    /// <summary>docker-compose with the file of the repository; a missing docker-compose fails with how to get it.</summary>
    internal static async Task<Cli.Result> DockerComposeAsync(params string[] args)
    {
        try
        {
            return await Cli.RunAsync("docker-compose", ["-f", ComposeFile, .. args], TimeSpan.FromSeconds(60));
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException("docker-compose is not installed: test.sh installs it (Debian package docker-compose)", e);
        }
    }

    /// <summary>
    /// The file as docker-compose normalizes it, as JSON: <c>config --format json</c> (Compose v2), else v1's YAML
    /// through PyYAML, which docker-compose v1 is written with (its own interpreter runs the conversion).
    /// </summary>
    internal static async Task<JsonElement> ComposeConfigAsync()
    {
        // v1 does not know --format, prints its usage and still exits 0: JSON is what starts with '{'.
        var json = await DockerComposeAsync("config", "--format", "json");
        if (json.ExitCode == 0 && json.Text.TrimStart().StartsWith('{'))
        {
            return JsonDocument.Parse(json.Stdout).RootElement.Clone();
        }

        var yaml = await DockerComposeAsync("config");
        Assert.True(yaml.ExitCode == 0, $"docker-compose config exited {yaml.ExitCode}:\n{yaml.Stderr}");
        var converted = await Cli.RunAsync(ComposePython(), ["-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
            TimeSpan.FromSeconds(30), stdin: yaml.Stdout);
        Assert.True(converted.ExitCode == 0, $"YAML -> JSON failed:\n{converted.Stderr}");
        return JsonDocument.Parse(converted.Stdout).RootElement.Clone();
    }

    /// <summary>The interpreter of docker-compose v1's script (it has PyYAML), else python3.</summary>
    private static string ComposePython()
    {
        var script = (System.Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
            .Select(dir => Path.Combine(dir, "docker-compose")).FirstOrDefault(File.Exists);
        if (script is not null)
        {
            using var reader = new StreamReader(script);
            var buffer = new char[256];
            var first = new string(buffer, 0, reader.Read(buffer, 0, buffer.Length)).Split('\n')[0];
            if (first.StartsWith("#!", StringComparison.Ordinal) && first.Contains("python", StringComparison.Ordinal))
            {
                return first[2..].Trim().Split(' ')[0];
            }
        }

        return "python3";
    }

    internal static Dictionary<string, string> Environment(JsonElement service)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!service.TryGetProperty("environment", out var environment))
        {
            return env;
        }

        if (environment.ValueKind == JsonValueKind.Array)
        {
            foreach (var entry in environment.EnumerateArray().Select(e => e.GetString()!))
            {
                var equals = entry.IndexOf('=', StringComparison.Ordinal);
                env[equals < 0 ? entry : entry[..equals]] = equals < 0 ? "" : entry[(equals + 1)..];
            }
        }
        else
        {
            foreach (var property in environment.EnumerateObject())
            {
                env[property.Name] = property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString()! : property.Value.GetRawText();
            }
        }

        return env;
    }

    private static List<string> DependsOn(JsonElement service) =>
        !service.TryGetProperty("depends_on", out var depends) ? []
        : depends.ValueKind == JsonValueKind.Array ? [.. depends.EnumerateArray().Select(d => d.GetString()!)]
        : [.. depends.EnumerateObject().Select(d => d.Name)];

    internal static List<string> Command(JsonElement service) =>
        !service.TryGetProperty("command", out var command) ? []
        : command.ValueKind == JsonValueKind.Array ? [.. command.EnumerateArray().Select(c => c.GetString()!)]
        : [.. command.GetString()!.Split(' ', StringSplitOptions.RemoveEmptyEntries)];

    private static List<string> ValuesOf(List<string> command, string option) =>
        [.. command.Select((arg, i) => (arg, i)).Where(a => a.arg == option && a.i + 1 < command.Count).Select(a => command[a.i + 1])];

    private sealed record PublishedPort(string? HostIp, int Published, int Target);

    /// <summary>Published ports: v1 prints "ip:published:target/proto" strings, v2 objects.</summary>
    private static List<PublishedPort> Ports(JsonElement service)
    {
        var ports = new List<PublishedPort>();
        if (!service.TryGetProperty("ports", out var list))
        {
            return ports;
        }

        foreach (var port in list.EnumerateArray())
        {
            if (port.ValueKind == JsonValueKind.String)
            {
                var parts = port.GetString()!.Split('/')[0].Split(':');
                Assert.True(parts.Length == 3, $"port '{port.GetString()}' names no host address");
                ports.Add(new PublishedPort(parts[0], int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture), int.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture)));
            }
            else
            {
                var hostIp = port.TryGetProperty("host_ip", out var ip) ? ip.GetString() : null;
                var published = port.GetProperty("published");
                ports.Add(new PublishedPort(hostIp,
                    published.ValueKind == JsonValueKind.Number ? published.GetInt32() : int.Parse(published.GetString()!, System.Globalization.CultureInfo.InvariantCulture),
                    port.GetProperty("target").GetInt32()));
            }
        }

        return ports;
    }

    [GeneratedRegex(@"^\s*-?\s*CLUSTER_SECRET\s*[:=]", RegexOptions.Multiline)]
    private static partial Regex SecretDefinition();

    // ---------------------------------------------------------------------------------------------- Dockerfile

    private sealed record Stage(string Name, string From, List<string> Instructions);

    /// <summary>Stages by name (FROM image AS name), each with its instructions (continuation lines joined).</summary>
    private static Dictionary<string, Stage> ParseDockerfile(IEnumerable<string> lines)
    {
        var stages = new Dictionary<string, Stage>(StringComparer.Ordinal);
        Stage? current = null;
        var pending = "";
        foreach (var raw in lines)
        {
            var line = raw.Trim();
            if (pending.Length == 0 && (line.Length == 0 || line.StartsWith('#')))
            {
                continue;
            }

            if (line.EndsWith('\\'))
            {
                pending += line[..^1] + " ";
                continue;
            }

            var instruction = pending + line;
            pending = "";
            var from = Regex.Match(instruction, @"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", RegexOptions.IgnoreCase);
            if (from.Success)
            {
                current = new Stage(from.Groups[2].Success ? from.Groups[2].Value : $"stage{stages.Count}", from.Groups[1].Value, []);
                stages[current.Name] = current;
            }
            else
            {
                current?.Instructions.Add(instruction);
            }
        }

        return stages;
    }

    /// <summary>The target stage and the stages it builds on, ending at the one FROM an image.</summary>
    private static List<Stage> Chain(Dictionary<string, Stage> stages, string target)
    {
        var chain = new List<Stage>();
        for (var stage = stages[target]; ; stage = stages[stage.From])
        {
            chain.Add(stage);
            if (!stages.ContainsKey(stage.From))
            {
                return chain;
            }
        }
    }
}
