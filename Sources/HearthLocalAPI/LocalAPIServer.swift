#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// Where the server listens.
public enum LocalAPIListener: Sendable, Hashable {
    /// Bind a new socket at `path` (a stale socket file there is removed first), then set its
    /// mode (default 0660) and, if given, its group. The file is removed again on shutdown.
    case unixSocket(path: String, mode: UInt32 = 0o660, group: LocalAPISocketGroup? = nil)
    /// Adopt an already bound and listening socket, e.g. from systemd socket activation
    /// (see `LocalAPIServer.listeningSocket(fromEnvironment:)`). The server owns it from then on.
    case inheritedSocket(descriptor: CInt)
}

/// The group that owns the socket file.
public enum LocalAPISocketGroup: Sendable, Hashable {
    case name(String)
    case id(UInt32)
}

/// Everything the server needs besides the backend.
public struct LocalAPIConfiguration: Sendable, Hashable {
    public var listener: LocalAPIListener
    public var limits: LocalAPILimits
    /// `listen(2)` backlog for sockets the server binds itself.
    public var backlog: Int32

    public init(listener: LocalAPIListener, limits: LocalAPILimits = LocalAPILimits(), backlog: Int32 = 128) {
        self.listener = listener
        self.limits = limits
        self.backlog = backlog
    }
}

/// Failures to set up the listening socket.
public struct LocalAPIServerError: Error, Sendable, Hashable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The agent's local API: HTTP/1.1 + JSON on a Unix domain socket, run as a swift-service-lifecycle
/// `Service`. `run()` binds (or adopts) the socket, serves until graceful shutdown or task
/// cancellation, then stops accepting, lets in-flight requests finish, and returns once every
/// connection is closed.
public final class LocalAPIServer: Service, Sendable {
    public let configuration: LocalAPIConfiguration
    private let requestHandler: LocalAPIRequestHandler
    private let logger: Logger
    private let group: any EventLoopGroup

    private enum Readiness {
        case pending([CheckedContinuation<Void, any Error>])
        case listening
        case failed(any Error)
    }

    private let readiness = NIOLockedValueBox(Readiness.pending([]))
    private struct Connections {
        var channels: [ObjectIdentifier: any Channel] = [:]
    }

    private let connections = NIOLockedValueBox(Connections())

    /// - Parameters:
    ///   - logger: used for lifecycle and per-connection messages (e.g. label `hearth.agent.api`).
    ///   - eventLoopGroup: where the socket work runs; backend calls run as Swift tasks.
    public init(
        configuration: LocalAPIConfiguration, backend: any LocalAPIBackend, logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.configuration = configuration
        self.requestHandler = LocalAPIRequestHandler(backend: backend, limits: configuration.limits)
        self.logger = logger
        self.group = eventLoopGroup
    }

    /// Connections open right now.
    public var openConnections: Int { connections.withLockedValue { $0.channels.count } }

    /// Returns once the socket accepts connections (for `READY=1`); throws if `run()` failed first.
    public func waitUntilListening() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let result: Result<Void, any Error>? = readiness.withLockedValue { state in
                switch state {
                case .pending(var waiters):
                    waiters.append(continuation)
                    state = .pending(waiters)
                    return nil
                case .listening: return .success(())
                case .failed(let error): return .failure(error)
                }
            }
            if let result { continuation.resume(with: result) }
        }
    }

    private func markReadiness(_ result: Result<Void, any Error>) {
        let waiters: [CheckedContinuation<Void, any Error>] = readiness.withLockedValue { state in
            guard case .pending(let waiters) = state else { return [] }
            switch result {
            case .success: state = .listening
            case .failure(let error): state = .failed(error)
            }
            return waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    public func run() async throws {
        let channel: any Channel
        do {
            channel = try await bind()
        } catch {
            logger.error("local API could not listen", metadata: ["error": "\(error)"])
            markReadiness(.failure(error))
            throw error
        }
        logger.info("local API listening", metadata: ["socket": "\(describeListener())"])
        markReadiness(.success(()))

        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                // Returns when the listener closes: after a shutdown began, or if it failed.
                try? await channel.closeFuture.get()
            } onCancel: {
                channel.close(promise: nil)
            }
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
        // No new connections now. Ask every open one to finish: NIO's HTTPServerPipelineHandler
        // closes an idle connection at once and a busy one after its response; a half-received
        // request is bounded by the request timeout.
        let children = connections.withLockedValue { Array($0.channels.values) }
        logger.info("local API shutting down", metadata: ["open_connections": "\(children.count)"])
        for child in children {
            child.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        for child in children {
            try? await child.closeFuture.get()
        }
        if case .unixSocket(let path, _, _) = configuration.listener {
            unlink(path)
        }
        logger.info("local API stopped")
    }

    private func describeListener() -> String {
        switch configuration.listener {
        case .unixSocket(let path, _, _): return path
        case .inheritedSocket(let descriptor): return "inherited fd \(descriptor)"
        }
    }

    private func bind() async throws -> any Channel {
        let limits = configuration.limits
        let requestHandler = self.requestHandler
        let logger = self.logger
        let connections = self.connections
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: configuration.backlog)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            .childChannelInitializer { channel in
                let key = ObjectIdentifier(channel)
                let admitted = connections.withLockedValue { state -> Bool in
                    guard state.channels.count < limits.maxConnections else { return false }
                    state.channels[key] = channel
                    return true
                }
                guard admitted else {
                    logger.warning("too many connections; refusing one", metadata: ["max": "\(limits.maxConnections)"])
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(RefuseConnectionHandler())
                    }
                }
                channel.closeFuture.whenComplete { _ in
                    connections.withLockedValue { _ = $0.channels.removeValue(forKey: key) }
                }
                return channel.eventLoop.makeCompletedFuture {
                    var decoderLimits = NIOHTTPDecoderLimitConfiguration()
                    decoderLimits.maxHeaderFieldSize = limits.maxHeaderBytes
                    decoderLimits.maxHeaderListSize = limits.maxHeaderBytes
                    decoderLimits.maxHeaderFieldCount = 256
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ConnectionGuardHandler(limits: limits, logger: logger))
                    try sync.configureHTTPServerPipeline(
                        withPipeliningAssistance: true,
                        withServerUpgrade: nil,
                        withErrorHandling: false,
                        withOutboundHeaderValidation: true,
                        withEncoderConfiguration: HTTPResponseEncoder.Configuration(),
                        withDecoderLimitConfiguration: decoderLimits
                    )
                    try sync.addHandler(ProtocolErrorHandler(logger: logger))
                    try sync.addHandler(HTTPRequestChannelHandler(requestHandler: requestHandler, logger: logger))
                }
            }

        switch configuration.listener {
        case .unixSocket(let path, let mode, let socketGroup):
            guard path.utf8.count < 108 else {
                throw LocalAPIServerError("socket path is \(path.utf8.count) bytes; Unix socket paths must be under 108")
            }
            let channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
            do {
                try Self.applyPermissions(path: path, mode: mode, group: socketGroup)
            } catch {
                try? await channel.close()
                unlink(path)
                throw error
            }
            return channel
        case .inheritedSocket(let descriptor):
            try Self.checkListeningSocket(descriptor)
            return try await bootstrap.withBoundSocket(descriptor).get()
        }
    }

    static func applyPermissions(path: String, mode: UInt32, group: LocalAPISocketGroup?) throws {
        if let group {
            let gid: gid_t
            switch group {
            case .id(let id): gid = gid_t(id)
            case .name(let name):
                guard let entry = getgrnam(name) else { throw LocalAPIServerError("unknown group \"\(name)\" for the socket") }
                gid = entry.pointee.gr_gid
            }
            guard chown(path, uid_t.max, gid) == 0 else {
                throw LocalAPIServerError("chown of \(path) to gid \(gid) failed: \(String(cString: strerror(errno)))")
            }
        }
        guard chmod(path, mode_t(mode)) == 0 else {
            throw LocalAPIServerError("chmod of \(path) failed: \(String(cString: strerror(errno)))")
        }
    }

    /// Throws unless `descriptor` is a listening stream socket.
    static func checkListeningSocket(_ descriptor: CInt) throws {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw LocalAPIServerError("fd \(descriptor) is not open: \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else { throw LocalAPIServerError("fd \(descriptor) is not a socket") }
        var accepting: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) == 0, accepting != 0 else {
            throw LocalAPIServerError("fd \(descriptor) is not a listening socket")
        }
    }

    /// The socket passed by systemd socket activation (`sd_listen_fds(3)`), or nil when the
    /// environment passes none to this process (`LISTEN_PID` absent or another process's).
    ///
    /// With `name`, picks the socket whose `FileDescriptorName=` matches in `LISTEN_FDNAMES`;
    /// without, the first one (fd 3). The descriptor is marked close-on-exec and checked to be a
    /// listening socket. Callers should then unset `LISTEN_PID`, `LISTEN_FDS` and
    /// `LISTEN_FDNAMES` so child processes do not inherit them.
    public static func listeningSocket(
        fromEnvironment environment: [String: String], processID: Int32 = getpid(), name: String? = nil
    ) throws -> CInt? {
        try listeningSocket(fromEnvironment: environment, processID: processID, name: name, firstDescriptor: 3)
    }

    /// `firstDescriptor` is `SD_LISTEN_FDS_START` (3) except in tests.
    static func listeningSocket(
        fromEnvironment environment: [String: String], processID: Int32 = getpid(), name: String? = nil, firstDescriptor: CInt
    ) throws -> CInt? {
        guard let pidText = environment["LISTEN_PID"], let countText = environment["LISTEN_FDS"] else { return nil }
        guard let pid = Int32(pidText) else { throw LocalAPIServerError("LISTEN_PID is not a number: \"\(pidText)\"") }
        guard pid == processID else { return nil }
        guard let count = Int32(countText), count >= 0 else {
            throw LocalAPIServerError("LISTEN_FDS is not a count: \"\(countText)\"")
        }
        guard count > 0 else { return nil }
        let first = firstDescriptor
        var index: Int32 = 0
        if let name {
            let names = (environment["LISTEN_FDNAMES"] ?? "").split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard let found = names.firstIndex(of: name), found < Int(count) else {
                throw LocalAPIServerError("no socket named \"\(name)\" in LISTEN_FDNAMES")
            }
            index = Int32(found)
        }
        let descriptor = first + index
        try checkListeningSocket(descriptor)
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        return descriptor
    }
}
