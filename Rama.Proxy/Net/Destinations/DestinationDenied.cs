namespace Rama.Proxy.Net.Destinations;

/// <summary>
/// Set in a request's (or SOCKS5 connection's) extensions by the dial that the destination rules refused: which
/// destination, which rule, and the text the client gets (<c>destination 169.254.169.254:80 denied by rule 'link-local'</c>).
/// </summary>
public sealed record DestinationDenied(DestinationQuery Destination, string Rule, string Text);
