import Logging
import NIOCore
import NIOHTTP1

/// Where a connection is in its request cycle; sent by `HTTPRequestChannelHandler` to
/// `ConnectionGuardHandler` as user outbound events.
enum ConnectionPhase: Sendable {
    case headReceived
    case requestReceived
    case responseSent
}

/// First handler on a connection, on raw bytes: enforces the idle timeout between requests, the
/// deadline for receiving a whole request from its first byte (a slowloris client trickling
/// bytes is closed however often it sends), and the size of the request head.
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private enum Phase {
        case idle
        case receiving(headBytes: Int, headDone: Bool)
        case processing
        case rejected
    }

    private let limits: LocalAPILimits
    private let logger: Logger
    private var phase = Phase.idle
    private var timer: Scheduled<Void>?

    init(limits: LocalAPILimits, logger: Logger) {
        self.limits = limits
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        armTimer(context: context, milliseconds: limits.idleTimeoutMilliseconds, reason: "idle")
        context.fireChannelActive()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive {
            armTimer(context: context, milliseconds: limits.idleTimeoutMilliseconds, reason: "idle")
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimer()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        switch phase {
        case .rejected:
            return  // closing; drop everything
        case .idle:
            phase = .receiving(headBytes: buffer.readableBytes, headDone: false)
            armTimer(context: context, milliseconds: limits.requestTimeoutMilliseconds, reason: "request not received in time",
                     answerTimeout: true)
        case .receiving(let headBytes, let headDone):
            if !headDone {
                // Checked before adding this read, so a head and body arriving in one read pass.
                if headBytes > limits.maxHeaderBytes {
                    reject(context: context, status: "431 Request Header Fields Too Large",
                           message: "request head larger than \(limits.maxHeaderBytes) bytes")
                    return
                }
                phase = .receiving(headBytes: headBytes + buffer.readableBytes, headDone: false)
            }
        case .processing:
            break  // a pipelined request; the idle timer applies once the response is out
        }
        context.fireChannelRead(data)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard let event = event as? ConnectionPhase else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        switch (event, phase) {
        case (_, .rejected):
            break
        case (.headReceived, .receiving(let headBytes, _)):
            phase = .receiving(headBytes: headBytes, headDone: true)
        case (.headReceived, _):
            // A pipelined request whose bytes arrived while the previous one was processed.
            phase = .receiving(headBytes: 0, headDone: true)
            armTimer(context: context, milliseconds: limits.requestTimeoutMilliseconds, reason: "request not received in time",
                     answerTimeout: true)
        case (.requestReceived, _):
            phase = .processing
            cancelTimer()  // the backend may take its time; the client is waiting, not us
        case (.responseSent, .processing):
            phase = .idle
            armTimer(context: context, milliseconds: limits.idleTimeoutMilliseconds, reason: "idle")
        case (.responseSent, _):
            break
        }
        promise?.succeed()
    }

    private func reject(context: ChannelHandlerContext, status: String, message: String) {
        phase = .rejected
        cancelTimer()
        logger.notice("rejecting request", metadata: ["reason": "\(message)"])
        let body = JSONValue.object(["error": .string(message)]).serialized()
        let text = "HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        let buffer = context.channel.allocator.buffer(string: text)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.byteBuffer(buffer))).whenComplete { _ in
            loopBound.value.close(promise: nil)
        }
    }

    /// Closes the connection after `milliseconds` unless re-armed or cancelled first. With
    /// `answerTimeout`, a client whose request is still arriving is told so with a 408 first.
    private func armTimer(context: ChannelHandlerContext, milliseconds: Int64, reason: String, answerTimeout: Bool = false) {
        cancelTimer()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let logger = self.logger
        timer = context.eventLoop.scheduleTask(in: .milliseconds(milliseconds)) {
            if answerTimeout, case .receiving = handler.value.phase {
                handler.value.reject(context: loopBound.value, status: "408 Request Timeout",
                                     message: "request not received within \(milliseconds) ms")
                return
            }
            logger.notice("closing connection", metadata: ["reason": "\(reason)"])
            loopBound.value.close(promise: nil)
        }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
    }
}

/// Collects a request (head and bounded body), runs it through `LocalAPIRequestHandler` off the
/// event loop, and writes the JSON response. Sits behind NIO's `HTTPServerPipelineHandler`, so it
/// sees one request at a time and graceful quiescing closes the connection after the response.
final class HTTPRequestChannelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        case receiving(HTTPRequestHead, ByteBuffer)
        /// A request was answered early (413): ignore its remaining parts; the connection closes.
        case discarding
        case processing
    }

    private let requestHandler: LocalAPIRequestHandler
    private let limits: LocalAPILimits
    private let logger: Logger
    private var state = State.idle

    init(requestHandler: LocalAPIRequestHandler, logger: Logger) {
        self.requestHandler = requestHandler
        self.limits = requestHandler.limits
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            context.triggerUserOutboundEvent(ConnectionPhase.headReceived, promise: nil)
            if head.uri.utf8.count > limits.maxHeaderBytes {
                state = .discarding
                respond(context: context, version: head.version, keepAlive: false,
                        response: LocalAPIResponse(error: LocalAPIError(status: 414, message: "request target longer than \(limits.maxHeaderBytes) bytes")))
                return
            }
            let headSize = head.uri.utf8.count + head.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
            if headSize > limits.maxHeaderBytes {
                state = .discarding
                respond(context: context, version: head.version, keepAlive: false,
                        response: LocalAPIResponse(error: LocalAPIError(status: 431, message: "request head larger than \(limits.maxHeaderBytes) bytes")))
                return
            }
            // A body-carrying method must say how long its body is (or stream it chunked);
            // otherwise HTTP/1.1 reads it as empty and the body's bytes as the next request.
            if head.method == .POST || head.method == .PUT || head.method == .PATCH,
               !head.headers.contains(name: "content-length"), !head.headers.contains(name: "transfer-encoding") {
                state = .discarding
                respond(context: context, version: head.version, keepAlive: false,
                        response: LocalAPIResponse(error: LocalAPIError(status: 411, message: "\(head.method.rawValue) needs a Content-Length or a chunked body")))
                return
            }
            if let length = head.headers.first(name: "content-length").flatMap({ Int($0) }), length > limits.maxBodyBytes {
                state = .discarding
                respond(context: context, version: head.version, keepAlive: false,
                        response: LocalAPIResponse(error: .payloadTooLarge("body of \(length) bytes, at most \(limits.maxBodyBytes) allowed")))
                return
            }
            state = .receiving(head, context.channel.allocator.buffer(capacity: 0))
        case .body(var chunk):
            guard case .receiving(let head, var body) = state else { return }
            guard body.readableBytes + chunk.readableBytes <= limits.maxBodyBytes else {
                state = .discarding
                respond(context: context, version: head.version, keepAlive: false,
                        response: LocalAPIResponse(error: .payloadTooLarge("body larger than \(limits.maxBodyBytes) bytes")))
                return
            }
            state = .processing  // release the buffer's reference so the append does not copy
            body.writeBuffer(&chunk)
            state = .receiving(head, body)
        case .end:
            switch state {
            case .receiving(let head, var body):
                state = .processing
                context.triggerUserOutboundEvent(ConnectionPhase.requestReceived, promise: nil)
                let request = LocalAPIRequest(
                    method: head.method.rawValue, uri: head.uri,
                    body: body.readBytes(length: body.readableBytes) ?? []
                )
                let keepAlive = head.isKeepAlive
                let handler = requestHandler
                let logger = self.logger
                context.eventLoop.makeFutureWithTask {
                    let response = await handler.respond(to: request)
                    logger.debug("request", metadata: [
                        "method": "\(request.method)", "uri": "\(request.uri)", "status": "\(response.status)",
                    ])
                    return response
                }.assumeIsolated().whenSuccess { response in
                    self.respond(context: context, version: head.version, keepAlive: keepAlive, response: response)
                }
            case .discarding, .idle, .processing:
                state = .idle
            }
        }
    }

    private func respond(context: ChannelHandlerContext, version: HTTPVersion, keepAlive: Bool, response: LocalAPIResponse) {
        let bytes = response.body.serializedBytes() + [UInt8(ascii: "\n")]
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(bytes.count))
        headers.add(name: "Cache-Control", value: "no-store")
        if !response.allow.isEmpty { headers.add(name: "Allow", value: response.allow.joined(separator: ", ")) }
        if !keepAlive {
            headers.add(name: "Connection", value: "close")
        } else if version.major == 1 && version.minor == 0 {
            headers.add(name: "Connection", value: "keep-alive")
        }
        let head = HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if case .processing = self.state { self.state = .idle }
            if keepAlive {
                context.triggerUserOutboundEvent(ConnectionPhase.responseSent, promise: nil)
            } else {
                context.close(promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}

/// Answers a connection over the limit with a 503 and closes it, without reading its request.
final class RefuseConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelActive(context: ChannelHandlerContext) {
        let body = JSONValue.object(["error": "too many connections"]).serialized() + "\n"
        let text = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: text))).whenComplete { _ in
            loopBound.value.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// Answers a request NIO's HTTP decoder cannot parse (bad request line, header syntax, a
/// conflicting `Content-Length`, a head over the decoder's limits) with a JSON error and closes
/// the connection: 431 for an oversized head, 400 otherwise. Replaces NIO's
/// `HTTPServerProtocolErrorHandler`, whose 400 has an empty body.
final class ProtocolErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let logger: Logger
    private var responseInProgress = false

    init(logger: Logger) {
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        // The decoder closes the connection right after this returns; answer only if no
        // response has started on it.
        if !responseInProgress {
            let status: HTTPResponseStatus = parserError == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
            let message = parserError == .headerOverflow ? "request head too large" : "malformed HTTP request (\(parserError))"
            logger.notice("rejecting request", metadata: ["reason": "\(message)"])
            let bytes = JSONValue.object(["error": .string(message)]).serializedBytes() + [UInt8(ascii: "\n")]
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: String(bytes.count))
            headers.add(name: "Cache-Control", value: "no-store")
            headers.add(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code < 200: break  // informational (1xx): more follows
        case .head: responseInProgress = true
        case .body: break
        case .end: responseInProgress = false
        }
        context.write(data, promise: promise)
    }
}
