/// A libcurl result code (`CURLcode`), with named constants for the ones Hearth reacts to and
/// curl's own message.
///
/// The numbers are libcurl's stable ABI values (`curl/curl.h`); this module does not link
/// libcurl, so the agent can name a transfer's failure without mapping the TLS stack (the
/// transfer itself runs in `hearth-fetch`, docs/agent.md).
public struct CurlCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int

    public init(rawValue: Int) { self.rawValue = rawValue }

    public static let ok = CurlCode(rawValue: 0)
    public static let unsupportedProtocol = CurlCode(rawValue: 1)
    public static let failedInit = CurlCode(rawValue: 2)
    public static let urlMalformed = CurlCode(rawValue: 3)
    public static let couldntResolveHost = CurlCode(rawValue: 6)
    public static let couldntConnect = CurlCode(rawValue: 7)
    public static let partialFile = CurlCode(rawValue: 18)
    public static let writeError = CurlCode(rawValue: 23)
    public static let operationTimedOut = CurlCode(rawValue: 28)
    public static let sslConnectError = CurlCode(rawValue: 35)
    public static let abortedByCallback = CurlCode(rawValue: 42)
    public static let gotNothing = CurlCode(rawValue: 52)
    public static let sendError = CurlCode(rawValue: 55)
    public static let recvError = CurlCode(rawValue: 56)
    public static let peerFailedVerification = CurlCode(rawValue: 60)
    public static let fileSizeExceeded = CurlCode(rawValue: 63)
    public static let sslCACertBadFile = CurlCode(rawValue: 77)

    /// curl's description of the code (`curl_easy_strerror` of libcurl 7.88 for the codes an
    /// HTTP(S) transfer can end with; "curl error N" for the others).
    public var message: String {
        switch rawValue {
        case 0: return "No error"
        case 1: return "Unsupported protocol"
        case 2: return "Failed initialization"
        case 3: return "URL using bad/illegal format or missing URL"
        case 5: return "Couldn't resolve proxy name"
        case 6: return "Couldn't resolve host name"
        case 7: return "Couldn't connect to server"
        case 8: return "Weird server reply"
        case 16: return "Error in the HTTP2 framing layer"
        case 18: return "Transferred a partial file"
        case 23: return "Failed writing received data to disk/application"
        case 26: return "Failed to open/read local data from file/application"
        case 27: return "Out of memory"
        case 28: return "Timeout was reached"
        case 35: return "SSL connect error"
        case 42: return "Operation was aborted by an application callback"
        case 43: return "A libcurl function was given a bad argument"
        case 47: return "Number of redirects hit maximum amount"
        case 52: return "Server returned nothing (no headers, no data)"
        case 55: return "Failed sending data to the peer"
        case 56: return "Failure when receiving data from the peer"
        case 58: return "Problem with the local SSL certificate"
        case 60: return "SSL peer certificate or SSH remote key was not OK"
        case 61: return "Unrecognized or bad HTTP Content or Transfer-Encoding"
        case 63: return "Maximum file size exceeded"
        case 77: return "Problem with the SSL CA cert (path? access rights?)"
        case 80: return "Failed to shut down the SSL connection"
        case 92: return "Stream error in the HTTP/2 framing layer"
        case 97: return "proxy handshake error"
        default: return "curl error \(rawValue)"
        }
    }

    public var description: String { "\(message) (\(rawValue))" }
}
