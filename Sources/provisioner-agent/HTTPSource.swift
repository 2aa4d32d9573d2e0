import ProvisionerImage

/// The HTTPS source plugs in here: `ProvisionerClient` (issue 4) gives the mTLS client; an
/// `ObjectSource` over it serves resolve (GET /v1/images/NAME/latest), manifest
/// (GET .../versions/ID?delta-from=OLD) and objects (POST /v1/objects/pack, decoded with
/// PackDecoder). Until the client is on main, URLs are refused with a clear message.
func makeHTTPSource(url: String) throws -> any ObjectSource {
    throw AgentFailure(
        message: "\(url): the HTTPS image source is not built into this agent yet; use a store directory", exitCode: 2)
}
