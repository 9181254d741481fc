import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Counts the aggregator's open connections and admits a new one only below the cap
/// (`server.max_connections`). Shared by every connection's set-up, on any event loop.
final class ConnectionCounter: Sendable {
    let maximum: Int
    private let open = Atomic<Int>(0)

    init(maximum: Int) {
        self.maximum = maximum
    }

    /// Takes a slot: true when there was one (release it once the connection closes).
    func admit() -> Bool {
        let (_, now) = open.add(1, ordering: .relaxed)
        if now <= maximum { return true }
        open.subtract(1, ordering: .relaxed)
        return false
    }

    /// Gives back a slot taken by `admit()`; the number of connections still open.
    @discardableResult
    func release() -> Int {
        open.subtract(1, ordering: .relaxed).newValue
    }

    var current: Int { open.load(ordering: .relaxed) }
}

/// A child channel that enforces `server.max_connections` before anything else runs on an
/// accepted connection: admitted connections are set up by `base`; over the cap, the connection
/// is answered 503 `too_many_connections` (plain HTTP) or closed at once (TLS: no HTTP can be
/// spoken before a handshake, and refusing must not cost one), without reading its request.
struct ConnectionCapChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value

    let base: Base
    let counter: ConnectionCounter
    /// Whether a refused connection gets an HTTP 503 (false under TLS: closed without a word).
    let answersRefusal: Bool
    let metrics: AggregatorMetrics
    let logger: Logger

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let admitted = counter.admit()
        if admitted {
            metrics.connectionsOpen.set(Int64(counter.current))
            let counter = self.counter
            let metrics = self.metrics
            channel.closeFuture.whenComplete { _ in metrics.connectionsOpen.set(Int64(counter.release())) }
        } else {
            metrics.connectionRefused(reason: ConnectionRefusal.tooManyConnections)
            self.logger.warning("too many connections; refusing one", metadata: ["max": "\(counter.maximum)"])
        }
        return channel.eventLoop.makeCompletedFuture {
            if !admitted {
                // First in the pipeline: it answers (or just closes) and swallows every byte, so
                // the HTTP handlers that `base` adds behind it never see a request.
                try channel.pipeline.syncOperations.addHandler(RefuseConnectionHandler(answers: answersRefusal))
            }
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// A child channel that puts `RequestDeadlineHandler` on the connection's plaintext bytes (after
/// TLS, before the HTTP decoder) and then lets `base` (Hummingbird's HTTP/1 channel, configured
/// with `RequestPhaseHandler` among its additional handlers) add the rest.
struct RequestDeadlineChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value

    let base: Base
    let timeout: TimeAmount
    let metrics: AggregatorMetrics
    let logger: Logger

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let timeout = self.timeout
        let metrics = self.metrics
        let handlerLogger = self.logger
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(RequestDeadlineHandler(timeout: timeout, metrics: metrics, logger: handlerLogger))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// The reasons under which `hearth_connections_refused_total` counts connections.
enum ConnectionRefusal {
    static let tooManyConnections = "too_many_connections"
    static let requestTimeout = "request_timeout"
    static let all = [tooManyConnections, requestTimeout]
}

/// Where a connection is in its request cycle; sent by `RequestPhaseHandler` (which sees HTTP
/// parts) to `RequestDeadlineHandler` (which sees bytes) as user outbound events.
enum RequestPhase: Sendable {
    case headReceived
    case requestReceived
    case responseSent
}

/// On the plaintext bytes of a connection: a request must arrive whole (head and body) within
/// `timeout` of its first byte, however often bytes come. Otherwise the client is answered 408
/// `request_timeout` (in the aggregator's rejection format) and the connection is closed; if a
/// response already went out (the route answered without reading the whole body) it is only
/// closed. The clock stops once the request is received (the route may take its time) and
/// starts again with the first byte of the next one; waiting between requests is
/// Hummingbird's idle timeout (`server.idle_timeout_seconds`).
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private enum Phase {
        /// Between requests.
        case idle
        /// A request is arriving; `responded` once a response to it was sent before it was whole.
        case receiving(responded: Bool)
        /// The request is whole; its response is being produced.
        case processing
        /// Cut off: closing.
        case closing
    }

    private let timeout: TimeAmount
    private let metrics: AggregatorMetrics
    private let logger: Logger
    private var phase = Phase.idle
    private var timer: Scheduled<Void>?

    init(timeout: TimeAmount, metrics: AggregatorMetrics, logger: Logger) {
        self.timeout = timeout
        self.metrics = metrics
        self.logger = logger
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimer()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch phase {
        case .closing:
            return  // cut off; drop everything
        case .idle:
            startReceiving(context: context)
        case .receiving, .processing:
            break  // more of this request, or a pipelined one (its head restarts the clock)
        }
        context.fireChannelRead(data)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard let event = event as? RequestPhase else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        switch (event, phase) {
        case (_, .closing):
            break
        case (.headReceived, .idle), (.headReceived, .processing):
            // A pipelined request whose bytes arrived while the previous one was processed.
            startReceiving(context: context)
        case (.headReceived, .receiving):
            break
        case (.requestReceived, .receiving(let responded)):
            cancelTimer()
            phase = responded ? .idle : .processing
        case (.requestReceived, _):
            break
        case (.responseSent, .processing):
            phase = .idle
        case (.responseSent, .receiving):
            phase = .receiving(responded: true)
        case (.responseSent, .idle):
            break
        }
        promise?.succeed()
    }

    private func startReceiving(context: ChannelHandlerContext) {
        phase = .receiving(responded: false)
        cancelTimer()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            handler.value.deadlinePassed(context: loopBound.value)
        }
    }

    private func deadlinePassed(context: ChannelHandlerContext) {
        timer = nil
        guard case .receiving(let responded) = phase else { return }
        phase = .closing
        metrics.connectionRefused(reason: ConnectionRefusal.requestTimeout)
        let seconds = timeout.nanoseconds / 1_000_000_000
        logger.notice("request not received in time; closing the connection", metadata: ["timeout_seconds": "\(seconds)"])
        guard !responded else {
            context.close(promise: nil)
            return
        }
        let answer = AggregatorHTTP.rawRejection(
            status: "408 Request Timeout", reason: ConnectionRefusal.requestTimeout,
            message: "the request was not received within \(seconds) s", retryAfter: nil)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.byteBuffer(context.channel.allocator.buffer(bytes: answer)))).whenComplete { _ in
            loopBound.value.close(promise: nil)
        }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
    }
}

/// Among Hummingbird's additional HTTP/1 handlers: tells `RequestDeadlineHandler` when a
/// request's head and its end have been decoded and when its response has been written.
final class RequestPhaseHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: context.triggerUserOutboundEvent(RequestPhase.headReceived, promise: nil)
        case .end: context.triggerUserOutboundEvent(RequestPhase.requestReceived, promise: nil)
        case .body: break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let isEnd: Bool
        if case .end = unwrapOutboundIn(data) { isEnd = true } else { isEnd = false }
        context.write(data, promise: promise)
        if isEnd { context.triggerUserOutboundEvent(RequestPhase.responseSent, promise: nil) }
    }
}

/// First on a connection over the cap: answers it 503 `too_many_connections` and closes it (or
/// just closes it when `answers` is false), reading nothing from it.
final class RefuseConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let answers: Bool
    private var refused = false

    init(answers: Bool) {
        self.answers = answers
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { refuse(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        refuse(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    private func refuse(context: ChannelHandlerContext) {
        guard !refused else { return }
        refused = true
        guard answers else {
            context.close(promise: nil)
            return
        }
        let answer = AggregatorHTTP.rawRejection(
            status: "503 Service Unavailable", reason: ConnectionRefusal.tooManyConnections,
            message: "the server has too many connections open; try again later", retryAfter: 5)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: answer))).whenComplete { _ in
            loopBound.value.close(promise: nil)
        }
    }
}

extension AggregatorHTTP {
    /// A whole HTTP/1.1 rejection written below the HTTP encoder, in the format of `rejection`:
    /// `X-Hearth-Reason`, a text body starting with the reason, and `Connection: close`.
    static func rawRejection(status: String, reason: String, message: String, retryAfter: Int?) -> [UInt8] {
        let body = reason + ": " + message + "\n"
        var head = "HTTP/1.1 \(status)\r\nContent-Type: text/plain; charset=utf-8\r\nX-Hearth-Reason: \(reason)\r\n"
        if let retryAfter { head += "Retry-After: \(retryAfter)\r\n" }
        head += "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        return Array((head + body).utf8)
    }
}
