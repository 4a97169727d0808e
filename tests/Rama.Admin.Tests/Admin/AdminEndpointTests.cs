using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Akka.Actor;
using Microsoft.Extensions.DependencyInjection;
using Rama.Admin.Admin;
using Rama.Cmd;

namespace Rama.Admin.Tests.Admin;

/// <summary>The admin endpoint with a real actor system (Akka.Cluster joined to itself), driven by pbm's own code.</summary>
public sealed class AdminEndpointTests
{
    [Fact]
    public async Task Cluster_show_lists_the_one_member_Up_as_leader()
    {
        await using var host = await AdminTestHost.StartAsync();
        var self = host.Cluster.SelfAddress.ToString();

        var (exit, output, error) = await host.PbmAsync("cluster", "show");

        Assert.True(exit == AdminExitCodes.Ok, error);
        Assert.Contains("ADDRESS", output, StringComparison.Ordinal);
        var row = output.Split('\n').Single(l => l.StartsWith(self, StringComparison.Ordinal));
        Assert.Contains("Up", row, StringComparison.Ordinal);
        Assert.Contains("reachable", row, StringComparison.Ordinal);
        Assert.Contains("leader", row, StringComparison.Ordinal);
        Assert.Contains("count: 1", output, StringComparison.Ordinal);
        Assert.Contains($"self: {self}", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cluster_show_json_is_one_document_with_the_members()
    {
        await using var host = await AdminTestHost.StartAsync();

        var (exit, output, error) = await host.PbmAsync("cluster", "show", "--json");

        Assert.True(exit == AdminExitCodes.Ok, error);
        using var document = JsonDocument.Parse(output);
        var member = Assert.Single(document.RootElement.GetProperty("members").EnumerateArray());
        Assert.Equal(host.Cluster.SelfAddress.ToString(), member.GetProperty("address").GetString());
        Assert.Equal("Up", member.GetProperty("status").GetString());
        Assert.Equal("leader", member.GetProperty("leader").GetString());
        Assert.Equal("1", document.RootElement.GetProperty("count").GetString());
        Assert.Equal(host.Cluster.SelfAddress.ToString(), document.RootElement.GetProperty("leader").GetString());
    }

    [Fact]
    public async Task Cluster_leader_answers_the_leader_address()
    {
        await using var host = await AdminTestHost.StartAsync();

        var (exit, output, _) = await host.PbmAsync("cluster", "leader");

        Assert.Equal(AdminExitCodes.Ok, exit);
        Assert.Contains(host.Cluster.SelfAddress.ToString(), output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("leave", "10.9.9.9:4054")]
    [InlineData("down", "10.9.9.9:4054")]
    [InlineData("down", "akka.tcp://rama@10.9.9.9:4054")]
    public async Task Leave_or_down_of_an_unknown_address_is_a_clear_error(string command, string address)
    {
        await using var host = await AdminTestHost.StartAsync();

        var (exit, _, error) = await host.PbmAsync("cluster", command, address);

        Assert.Equal(AdminExitCodes.Failed, exit);
        Assert.Contains($"no member at {address}: the members are {host.Cluster.SelfAddress}", error, StringComparison.Ordinal);
        Assert.Equal(Akka.Cluster.MemberStatus.Up, host.Cluster.SelfMember.Status);
    }

    [Fact]
    public async Task A_bad_address_argument_is_a_clear_error()
    {
        await using var host = await AdminTestHost.StartAsync();

        var (exit, _, error) = await host.PbmAsync("cluster", "down", "not-an-address");

        Assert.Equal(AdminExitCodes.Failed, exit);
        Assert.Contains("'not-an-address' is not an Akka address", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cluster_tail_yields_the_initial_member_up_then_the_join_of_a_second_system()
    {
        await using var first = await AdminTestHost.StartAsync();
        var output = new LineWriter();
        var error = new StringWriter();
        using var stop = new CancellationTokenSource();
        var tail = Task.Run(() => new PbmCommand(output, error, _ => null).RunAsync([first.Target, "cluster", "tail", "--json"], stop.Token));

        var self = first.Cluster.SelfAddress.ToString();
        await AdminTestHost.WaitAsync(() => Events(output).Any(e => e.Event == "member-up" && e.Address == self), "no initial member-up event");

        await using var second = await AdminTestHost.StartAsync(admin: false, joinSelf: false);
        second.Cluster.Join(first.Cluster.SelfAddress);
        var joined = second.Cluster.SelfAddress.ToString();
        await AdminTestHost.WaitAsync(() => Events(output).Any(e => e.Address == joined && e.Event is "member-joined" or "member-up"),
            "no event for the second member; got: " + string.Join(" | ", output.Lines));

        await stop.CancelAsync(); // Ctrl+C
        var exit = await tail.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(exit == AdminExitCodes.Ok, error.ToString());
        Assert.Equal("member-up", Events(output)[0].Event);
    }

    [Fact]
    public async Task Cluster_tail_ends_non_zero_with_a_message_when_the_node_stops()
    {
        var host = await AdminTestHost.StartAsync();
        var output = new LineWriter();
        var error = new StringWriter();
        var tail = Task.Run(() => new PbmCommand(output, error, _ => null).RunAsync([host.Target, "cluster", "tail"], CancellationToken.None));
        await AdminTestHost.WaitAsync(() => output.Lines.Any(l => l.Contains("member-up", StringComparison.Ordinal)), "no initial member-up line");

        await host.DisposeAsync();

        var exit = await tail.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(AdminExitCodes.Unreachable, exit);
        Assert.Contains("shutting down", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_node_without_a_cluster_says_it_runs_alone()
    {
        await using var host = await AdminTestHost.StartAsync(cluster: false);

        var (exit, _, error) = await host.PbmAsync("cluster", "show");

        Assert.Equal(AdminExitCodes.Failed, exit);
        Assert.Contains("this node runs alone: it was started without --seeds or --cluster", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Actor_hierarchy_lists_user_and_system_actors()
    {
        await using var host = await AdminTestHost.StartAsync(cluster: false);
        host.System.ActorOf(Props.Empty, "probe-parent");

        var (exit, output, error) = await host.PbmAsync("actor", "hierarchy");

        Assert.True(exit == AdminExitCodes.Ok, error);
        var lines = output.Split('\n');
        Assert.Contains(lines, l => l.StartsWith("/user ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("/system ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("  probe-parent ", StringComparison.Ordinal) && l.Contains("/user/probe-parent", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_bad_or_missing_token_is_refused_and_the_right_one_accepted()
    {
        await using var host = await AdminTestHost.StartAsync(new AdminOptions { Bind = new IPEndPoint(IPAddress.Loopback, 0), Token = "s3cret" }, cluster: false);

        var missing = await host.PbmAsync("actor", "hierarchy");
        var wrong = await host.PbmAsync("actor", "hierarchy", "--token", "guess");
        var right = await host.PbmAsync("actor", "hierarchy", "--token", "s3cret");
        var fromEnvironment = await AdminTestHost.RunPbmAsync([host.Target, "actor", "hierarchy"], new Dictionary<string, string> { [PbmCommand.TokenVariable] = "s3cret" });

        Assert.Equal(AdminExitCodes.Refused, missing.Exit);
        Assert.Contains("bad or missing admin token", missing.Error, StringComparison.Ordinal);
        Assert.Equal(AdminExitCodes.Refused, wrong.Exit);
        Assert.Contains("bad or missing admin token", wrong.Error, StringComparison.Ordinal);
        Assert.Equal(AdminExitCodes.Ok, right.Exit);
        Assert.Equal(AdminExitCodes.Ok, fromEnvironment.Exit);
    }

    [Fact]
    public async Task An_unknown_palette_or_command_lists_what_is_available()
    {
        await using var host = await AdminTestHost.StartAsync(cluster: false);

        var palette = await host.PbmAsync("nosuch", "show");
        var command = await host.PbmAsync("cluster", "nosuch");

        Assert.Equal(AdminExitCodes.Usage, palette.Exit);
        Assert.Contains("unknown palette 'nosuch': this endpoint has actor, cluster", palette.Error, StringComparison.Ordinal);
        Assert.Equal(AdminExitCodes.Usage, command.Exit);
        Assert.Contains("unknown command 'cluster nosuch': cluster has show, leader, leave, down, join, down-unreachable, tail", command.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Help_lists_the_palettes_of_the_endpoint()
    {
        await using var host = await AdminTestHost.StartAsync(cluster: false);

        var (exit, output, _) = await host.PbmAsync("help");

        Assert.Equal(AdminExitCodes.Ok, exit);
        Assert.Contains("exit codes:", output, StringComparison.Ordinal);
        Assert.Contains(output.Split('\n'), l => l.StartsWith("cluster", StringComparison.Ordinal) && l.Contains("down-unreachable", StringComparison.Ordinal));
        Assert.Contains(output.Split('\n'), l => l.StartsWith("actor", StringComparison.Ordinal) && l.Contains("hierarchy", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_request_line_longer_than_64_KiB_is_refused()
    {
        await using var host = await AdminTestHost.StartAsync(cluster: false);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(host.Admin);
        var line = Encoding.ASCII.GetBytes("{\"palette\":\"" + new string('a', AdminProtocol.MaxRequestBytes) + "\"}\n");

        await socket.SendAsync(line);
        var frames = await ReadFramesAsync(socket);

        Assert.Equal(2, frames.Count);
        Assert.Equal(AdminFrameType.Error, frames[0].Type);
        Assert.Equal("the request line is longer than 65536 bytes", frames[0].Message);
        Assert.Equal(AdminExitCodes.Usage, frames[1].Exit);
    }

    [Fact]
    public async Task A_request_line_that_is_not_json_is_refused()
    {
        await using var host = await AdminTestHost.StartAsync(cluster: false);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(host.Admin);

        // (A line that starts with an upper-case letter is an HTTP request: AdminHttpTests.)
        await socket.SendAsync("hello admin\r\n"u8.ToArray());
        var frames = await ReadFramesAsync(socket);

        Assert.StartsWith("the request line is not a JSON admin request", frames[0].Message, StringComparison.Ordinal);
        Assert.Equal(AdminExitCodes.Usage, frames[^1].Exit);
    }

    [Fact]
    public async Task No_request_line_within_5_s_is_refused()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        await using var host = await AdminTestHost.StartAsync(cluster: false, services: s => s.AddSingleton<TimeProvider>(time));
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(host.Admin);
        await socket.SendAsync("{\"pal"u8.ToArray());
        var frames = ReadFramesAsync(socket);

        // The server's 5 s timer exists once it has started reading: advance until the answer comes.
        await AdminTestHost.WaitAsync(() =>
        {
            time.Advance(TimeSpan.FromSeconds(1));
            return frames.IsCompleted;
        }, "no answer after the request timeout");

        Assert.Equal("no request line within 5 s", (await frames)[0].Message);
    }

    [Fact]
    public async Task A_bind_address_in_use_fails_the_start_with_a_clear_exception()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var endpoint = (IPEndPoint)taken.LocalEndpoint;

        var ex = await Assert.ThrowsAsync<AdminBindException>(() => AdminTestHost.StartAsync(new AdminOptions { Bind = endpoint }, cluster: false));

        Assert.StartsWith($"admin endpoint {endpoint}: address already in use", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_custom_palette_is_served_beside_the_built_in_ones()
    {
        await using var host = await AdminTestHost.StartAsync(cluster: false, services: s => s.AddSingleton<IAdminPalette, EchoPalette>());

        var (exit, output, _) = await host.PbmAsync("echo", "say", "hello", "world");

        Assert.Equal(AdminExitCodes.Ok, exit);
        Assert.Equal("hello world", output.Trim());
    }

    private sealed class EchoPalette : IAdminPalette
    {
        public string Name => "echo";

        public string Description => "echoes";

        public IReadOnlyList<AdminCommandInfo> Commands { get; } = [new("say", "<words>", "says the words")];

        public async ValueTask<int> ExecuteAsync(AdminRequest request, IAdminResponse response, CancellationToken cancellationToken)
        {
            await response.TextAsync(string.Join(' ', request.Args), cancellationToken);
            return AdminExitCodes.Ok;
        }
    }

    private sealed record TailEvent(string? Event, string? Address);

    private static List<TailEvent> Events(LineWriter output) =>
        [.. output.Lines.Select(l =>
        {
            using var json = JsonDocument.Parse(l);
            return new TailEvent(json.RootElement.GetProperty("event").GetString(), json.RootElement.GetProperty("address").GetString());
        })];

    private static async Task<List<AdminFrame>> ReadFramesAsync(Socket socket)
    {
        using var stream = new NetworkStream(socket, ownsSocket: false);
        using var reader = new StreamReader(stream);
        var frames = new List<AdminFrame>();
        while (await reader.ReadLineAsync() is { } line)
        {
            frames.Add(AdminProtocol.DecodeFrame(Encoding.UTF8.GetBytes(line)) ?? throw new InvalidDataException(line));
        }

        return frames;
    }
}
