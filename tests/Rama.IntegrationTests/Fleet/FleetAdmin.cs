using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Rama.IntegrationTests.Fleet;

/// <summary>A fleet member's admin endpoint asked straight on its protocol (one JSON line, NDJSON frames back): no pbm process start in a measurement.</summary>
internal static class FleetAdmin
{
    public static async Task UntilSelectableAsync(FleetMember node, string username, string id) =>
        await FleetHarness.UntilAsync(async () => await SelectAsync(node, username) == id, $"{username} selects {id} on {node.Name}");

    public static async Task<string> SelectAsync(FleetMember node, string username)
    {
        var frames = await AdminFramesAsync(node, "proxydb", "select", username);
        var table = frames.First(f => f.GetProperty("type").GetString() == "table");
        return table.GetProperty("rows")[0][1].GetString()!;
    }

    /// <summary>A palette's fields, asked straight on the admin endpoint's protocol (one JSON line, NDJSON frames back).</summary>
    public static async Task<Dictionary<string, string>> AskAsync(FleetMember node, string palette, string command, params string[] args)
    {
        var frames = await AdminFramesAsync(node, palette, command, args);
        var fields = frames.FirstOrDefault(f => f.GetProperty("type").GetString() == "fields");
        Assert.True(fields.ValueKind == JsonValueKind.Object, $"{palette} {command}: {string.Join(" | ", frames)}");
        return fields.GetProperty("fields").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "");
    }

    public static async Task<List<JsonElement>> AdminFramesAsync(FleetMember node, string palette, string command, params string[] args)
    {
        var endpoint = node.Process.AdminEndpoint!;
        using var client = new TcpClient();
        await client.ConnectAsync(endpoint.Address, endpoint.Port);
        await using var stream = client.GetStream();
        var request = JsonSerializer.Serialize(new { palette, command, args });
        await stream.WriteAsync(Encoding.UTF8.GetBytes(request + "\n"));
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var frames = new List<JsonElement>();
        while (await reader.ReadLineAsync() is { } line)
        {
            frames.Add(JsonDocument.Parse(line).RootElement.Clone());
        }

        return frames;
    }

    /// <summary>The rows of the table frame named <paramref name="table"/>.</summary>
    public static List<string[]> Rows(List<JsonElement> frames, string table) =>
        frames.Where(f => f.GetProperty("type").GetString() == "table" && f.GetProperty("name").GetString() == table)
            .SelectMany(f => f.GetProperty("rows").EnumerateArray().Select(r => r.EnumerateArray().Select(c => c.GetString() ?? "").ToArray()))
            .ToList();
}
