using System.Collections.Immutable;
using Akka.Actor;
using Akka.Configuration;
using Akka.DistributedData.Durable;
using Akka.Event;
using Akka.Serialization;

namespace Rama.Actors.Upstreams;

/// <summary>
/// A durable store for Akka.DistributedData's durable keys (Akka's own store protocol: <see cref="LoadAll"/> answered with
/// <see cref="LoadData"/> and <see cref="LoadAllCompleted"/>, then <see cref="Store"/> answered to its reply-to), keeping
/// one file per key in a directory: <c>&lt;key&gt;.ddata</c>, the <see cref="DurableDataEnvelope"/> in Akka's own
/// serialization (a line with the serializer id and manifest, then the bytes), written to a temporary file, flushed to disk and renamed over the old one, so a file is always whole.
/// Why not Akka.DistributedData.LightningDB: its 1.5.75 build calls LightningDB 0.16's API, and the package source
/// serves only LightningDB 0.23 and 0.24, where that method is gone (MissingMethodException at the first load).
/// Configured as <c>akka.cluster.distributed-data.durable.store-actor-class</c>, with the directory in
/// <c>durable.rama-files.dir</c>.
/// </summary>
internal sealed class FileDurableStore : ReceiveActor
{
    /// <summary>The extension of a key's file.</summary>
    internal const string Extension = ".ddata";

    /// <summary>The HOCON path (under <c>durable</c>) of the directory.</summary>
    internal const string DirectoryKey = "rama-files.dir";

    private readonly string _directory;
    private readonly Serializer _serializer;
    private readonly ILoggingAdapter _log = Context.GetLogger();

    public FileDurableStore(Config config)
    {
        ArgumentNullException.ThrowIfNull(config);
        _directory = config.GetString(DirectoryKey) is { Length: > 0 } dir
            ? dir
            : throw new ConfigurationException($"akka.cluster.distributed-data.durable.{DirectoryKey} is not set");
        Directory.CreateDirectory(_directory);
        _serializer = Context.System.Serialization.FindSerializerForType(typeof(DurableDataEnvelope));
        Receive<LoadAll>(_ => Load());
    }

    protected override void PostRestart(Exception reason)
    {
        base.PostRestart(reason);
        // Akka's protocol: the load happens once, on the first start.
        Become(Active);
    }

    /// <summary>The file of a key (key ids are escaped so any id is a file name).</summary>
    internal static string FileOf(string directory, string key) => Path.Combine(directory, Uri.EscapeDataString(key) + Extension);

    private void Load()
    {
        var started = DateTime.UtcNow;
        var loaded = ImmutableDictionary.CreateBuilder<string, DurableDataEnvelope>();
        try
        {
            foreach (var file in Directory.EnumerateFiles(_directory, "*" + Extension))
            {
                var key = Uri.UnescapeDataString(Path.GetFileNameWithoutExtension(file));
                loaded[key] = Decode(File.ReadAllBytes(file));
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Runtime.Serialization.SerializationException or InvalidCastException or FormatException)
        {
            throw new LoadFailedException($"failed to load durable distributed data from {_directory}", ex);
        }

        if (loaded.Count > 0)
        {
            Sender.Tell(new LoadData(loaded.ToImmutable()));
        }

        Sender.Tell(LoadAllCompleted.Instance);
        _log.Info("Loaded {0} durable keys from {1} in {2:0} ms", loaded.Count, _directory, (DateTime.UtcNow - started).TotalMilliseconds);
        Become(Active);
    }

    /// <summary><c>&lt;serializer id&gt; &lt;manifest&gt;\n</c> then the serialized envelope.</summary>
    private byte[] Encode(DurableDataEnvelope envelope)
    {
        var header = System.Text.Encoding.UTF8.GetBytes(
            string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{_serializer.Identifier} {Serialization.ManifestFor(_serializer, envelope)}\n"));
        return [.. header, .. _serializer.ToBinary(envelope)];
    }

    private DurableDataEnvelope Decode(byte[] bytes)
    {
        var newline = Array.IndexOf(bytes, (byte)'\n');
        var header = newline > 0 ? System.Text.Encoding.UTF8.GetString(bytes, 0, newline) : throw new FormatException("no header line");
        var space = header.IndexOf(' ', StringComparison.Ordinal);
        var id = int.Parse(header.AsSpan(0, space), System.Globalization.CultureInfo.InvariantCulture);
        return (DurableDataEnvelope)Context.System.Serialization.Deserialize(bytes[(newline + 1)..], id, header[(space + 1)..]);
    }

    private void Active()
    {
        Receive<Store>(store =>
        {
            try
            {
                var file = FileOf(_directory, store.Key);
                var temporary = file + ".tmp";
                using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
                {
                    stream.Write(Encode(store.Data));
                    stream.Flush(flushToDisk: true);
                }

                File.Move(temporary, file, overwrite: true);
                store.Reply?.ReplyTo.Tell(store.Reply.SuccessMessage);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                _log.Error(ex, "Failed to store durable key {0} in {1}", store.Key, _directory);
                store.Reply?.ReplyTo.Tell(store.Reply.FailureMessage);
            }
        });
    }
}
