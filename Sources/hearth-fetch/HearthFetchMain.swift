#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthCurl
import HearthHTTP

/// `hearth-fetch`: one HTTP(S) exchange with libcurl for `hearth-agent`, which starts it per
/// request so that it never maps libcurl and its TLS libraries itself (docs/agent.md).
///
/// Reads one request frame from standard input until end of file (`FetchFraming`,
/// docs/formats.md), performs it (a `.fileDescriptor` destination is descriptor 3), writes one
/// response frame to standard output and exits 0. A request frame it cannot read makes it
/// print the reason on standard error and exit 2; the transfer's own failures (timeout, DNS,
/// TLS, refused connection, ...) are answered in the frame with exit status 0.
@main
enum HearthFetchMain {
    static func main() {
        // A peer that resets the TLS connection must not kill the process mid-write (curl
        // runs with CURLOPT_NOSIGNAL); writes then fail with EPIPE instead.
        signal(SIGPIPE, SIG_IGN)
        let arguments = CommandLine.arguments.dropFirst()
        if !arguments.isEmpty {
            fail("takes no arguments; it reads a request frame on standard input (docs/formats.md)", status: 64)
        }
        let request: HTTPRequest
        let configuration: CurlClient.Configuration
        do throws(UploaderError) {
            (request, configuration) = try readRequest()
        } catch {
            fail(error.message, status: 2)
        }
        let result = InProcessCurlTransport.performBlocking(request, configuration)
        guard writeAll(FetchFraming.encodeResponse(result), to: 1) else {
            fail("writing the response frame: \(String(cString: strerror(errno)))", status: 3)
        }
        exit(0)
    }

    static func fail(_ message: String, status: Int32) -> Never {
        _ = writeAll(Array("hearth-fetch: \(message)\n".utf8), to: 2)
        exit(status)
    }

    /// Reads the request frame on standard input: the head until `FetchFraming.requestHeadLength`
    /// knows the body's length, then the body straight into a buffer of that size (a 13 MB update
    /// is held once), then end of file (anything more is refused).
    static func readRequest() throws(UploaderError) -> (HTTPRequest, CurlClient.Configuration) {
        var head: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var lengths: (head: Int, body: Int)?
        while lengths == nil {
            let n = try readChunk(&chunk, upTo: chunk.count)
            guard n > 0 else { throw .invalidRequest("standard input ended inside the request head") }
            head.append(contentsOf: chunk[0 ..< n])
            lengths = try FetchFraming.requestHeadLength(head)
            guard lengths != nil || head.count <= FetchFraming.maxRequestHeadBytes else {
                throw .invalidRequest("request head longer than \(FetchFraming.maxRequestHeadBytes) bytes")
            }
        }
        guard let lengths else { throw .invalidRequest("no request head") }
        var body: [UInt8] = []
        body.reserveCapacity(lengths.body)
        body.append(contentsOf: head[lengths.head...].prefix(lengths.body + 1))
        head.removeSubrange(lengths.head...)
        while body.count <= lengths.body {
            let n = try readChunk(&chunk, upTo: min(chunk.count, lengths.body + 1 - body.count))
            if n == 0 { break }
            body.append(contentsOf: chunk[0 ..< n])
        }
        return try FetchFraming.decodeRequest(head: head, body: body)
    }

    /// One `read` from standard input into `chunk` (at most `limit` bytes); 0 at end of file.
    static func readChunk(_ chunk: inout [UInt8], upTo limit: Int) throws(UploaderError) -> Int {
        while true {
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, min(limit, $0.count)) }
            if n >= 0 { return n }
            if errno != EINTR { throw .invalidRequest("reading standard input: \(String(cString: strerror(errno)))") }
        }
    }

    static func writeAll(_ bytes: [UInt8], to fd: Int32) -> Bool {
        bytes.withUnsafeBytes { buffer -> Bool in
            guard let base = buffer.baseAddress else { return true }
            var offset = 0
            while offset < buffer.count {
                let n = write(fd, base + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += n
            }
            return true
        }
    }
}
