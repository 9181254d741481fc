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
        guard let input = readStandardInput(limit: FetchFraming.maxRequestFrameBytes) else {
            fail("request frame larger than \(FetchFraming.maxRequestFrameBytes) bytes, or standard input unreadable", status: 2)
        }
        let request: HTTPRequest
        let configuration: CurlClient.Configuration
        do throws(UploaderError) {
            (request, configuration) = try FetchFraming.decodeRequest(input)
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

    /// All of standard input, or nil past `limit` bytes or on a read error.
    static func readStandardInput(limit: Int) -> [UInt8]? {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { return bytes }
            guard bytes.count + n <= limit else { return nil }
            bytes.append(contentsOf: chunk[0 ..< n])
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
