import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import TillerAsync

/// A request as the application sees it: the body is complete (and within the size limit).
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    public var path: String
    public var headers: HTTPHeaders
    public var body: Data
}

/// A full response, or a server-sent-event stream (each element is one `data:` payload).
public enum HTTPResponse: Sendable {
    case full(status: HTTPResponseStatus, headers: [(String, String)], body: Data)
    case events(AsyncStream<String>)

    public static func json(_ status: HTTPResponseStatus, _ object: Any, headers: [(String, String)] = []) -> HTTPResponse {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return .full(status: status, headers: [("Content-Type", "application/json")] + headers, body: data)
    }
}

public typealias HTTPHandler = @Sendable (HTTPRequest) async -> HTTPResponse
/// Decides from a request's head alone whether it may go on: nil lets it through, a response
/// refuses it (its body, if any, is not read and the connection closes).
public typealias HTTPAdmission = @Sendable (HTTPRequestHead) -> HTTPResponse?

/// What one client may take of the server, so that a slow or huge client cannot starve the others.
public struct HTTPLimits: Sendable {
    /// Largest request body (413 beyond; the connection closes).
    public var maxBodyBytes = 4 << 20
    /// Largest request line plus headers (431 beyond; the connection closes).
    public var maxHeaderBytes = 16 << 10
    /// Most header fields in one request (431 beyond).
    public var maxHeaderFields = 128
    /// Most connections open at once; more are answered 503 and closed at once.
    public var maxConnections = 256
    /// A client has this long to send a whole request (line, headers and body), counted from its
    /// connection or from the end of its previous answer; then it gets 408 (mid-request) or its
    /// idle keep-alive connection is closed. A request being answered is never timed out.
    public var readTimeout: TimeInterval = 30
    /// A streamed answer whose client stops reading (its socket and NIO's outbound buffer full)
    /// may wait this long for one chunk to leave; then the connection closes and its generation
    /// stops, so that a stalled client holds neither a connection nor the engine.
    public var writeTimeout: TimeInterval = 30
    /// Each connection's kernel send buffer (SO_SNDBUF). Bounded rather than autotuned (Linux lets
    /// it grow to 4 MiB): streamed chunks are small, so this costs no speed, keeps the kernel
    /// memory of 256 connections under 128 MiB, and lets `writeTimeout` notice a stalled reader
    /// within a few hundred kilobytes.
    public var sendBufferBytes = 256 << 10
    public init() {}
}

/// A small HTTP/1.1 server on SwiftNIO: collects each request body within the limits, runs the
/// async handler, writes the response. Malformed HTTP gets 400 and headers over the caps 431
/// (`ProtocolErrorAnswer`); nothing a client sends can crash it.
public final class HTTPServer: @unchecked Sendable {
    public let group: MultiThreadedEventLoopGroup
    private var channel: Channel?
    public let limits: HTTPLimits
    private let connections = Counter()
    private let refusedConnections = Counter()

    public init(limits: HTTPLimits = HTTPLimits(), threads: Int = 1) {
        self.limits = limits
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    }

    /// Connections open now, and those refused so far for being over `maxConnections`.
    public var connectionStats: (open: Int, refused: Int) { (connections.value, refusedConnections.value) }

    /// Binds and starts serving; returns the bound port (useful with port 0).
    @discardableResult
    public func start(host: String, port: Int, admission: @escaping HTTPAdmission = { _ in nil }, handler: @escaping HTTPHandler) throws -> Int {
        let limits = self.limits
        let tasks = self.tasks
        let connections = self.connections, refused = self.refusedConnections
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderFieldSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderListSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldCount = limits.maxHeaderFields
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard connections.increment(below: limits.maxConnections) else {
                    refused.increment(below: .max)
                    return Self.refuse(channel, limit: limits.maxConnections)
                }
                channel.closeFuture.whenComplete { _ in connections.decrement() }
                return channel.pipeline.configureHTTPServerPipeline(withErrorHandling: false, withDecoderLimitConfiguration: decoderLimits).flatMap {
                    channel.pipeline.addHandlers([ProtocolErrorAnswer(limits: limits),
                                                  RequestHandler(limits: limits, admission: admission, handler: handler, tasks: tasks)])
                }
            }
            .childChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.so_sndbuf), value: SocketOptionValue(limits.sendBufferBytes))
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 16)
        let ch = try bootstrap.bind(host: host, port: port).wait()
        channel = ch
        return ch.localAddress?.port ?? port
    }

    /// A connection over the limit: 503 with an OpenAI-style error, then closed.
    private static func refuse(_ channel: Channel, limit: Int) -> EventLoopFuture<Void> {
        let body = ServerError.errorBody("the server has \(limit) connections open, its limit; retry later", type: "server_error", code: "too_many_connections")
        var bytes = ByteBuffer(string: "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\nRetry-After: 1\r\n\r\n")
        bytes.writeBytes(body)
        channel.writeAndFlush(bytes).whenComplete { _ in channel.close(promise: nil) }
        return channel.eventLoop.makeSucceededVoidFuture()
    }

    public var port: Int? { channel?.localAddress?.port }

    /// Blocks until the server is closed.
    public func wait() throws { try channel?.closeFuture.wait() }

    /// Stops accepting, cancels handlers still running (waiting up to `grace` seconds for them,
    /// so none writes to a channel whose event loop is gone), then stops the event loops.
    public func shutdown(grace: Double = 10) {
        try? channel?.close().wait()
        let running = tasks.drain()
        for t in running { t.cancel() }
        _ = AsyncBridge.wait(timeout: grace) {
            for t in running { await t.value }
        }
        try? group.syncShutdownGracefully()
    }

    let tasks = TaskSet()
}

/// Answers what NIO's HTTP decoder cannot parse, when no answer has started on the connection:
/// 431 for a request line plus headers over `maxHeaderBytes` or more than `maxHeaderFields`
/// fields, 400 for anything else malformed, each with an OpenAI-style error body. The request
/// handler then stops reading the connection (see its `errorCaught`).
private final class ProtocolErrorAnswer: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    let limits: HTTPLimits
    /// An answer whose head is written and whose end is not.
    private var answering = false
    init(limits: HTTPLimits) { self.limits = limits }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let e = error as? HTTPParserError, !answering {
            let tooBig = e == .headerOverflow
            let body = tooBig
                ? ServerError.errorBody("the request line and headers exceed this server's limit of \(limits.maxHeaderBytes) bytes or \(limits.maxHeaderFields) fields",
                                        code: "request_header_fields_too_large")
                : ServerError.errorBody("the request is not valid HTTP/1.1 (\(e))", code: "bad_request")
            let headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", "\(body.count)"), ("Connection", "close")])
            let head = HTTPResponseHead(version: .http1_1, status: tooBig ? .requestHeaderFieldsTooLarge : .badRequest, headers: headers)
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let h) where h.status.code >= 200: answering = true
        case .end: answering = false
        default: break
        }
        context.write(data, promise: promise)
    }
}

private final class RequestHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let limits: HTTPLimits
    let admission: HTTPAdmission
    let handler: HTTPHandler
    let tasks: TaskSet
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var rejected = false
    /// Body bytes of the current request so far.
    private var received = 0
    /// The admission's answer for the current request, sent when its body has arrived.
    private var refusal: HTTPResponse?
    /// Handler tasks of this connection (event-loop confined), cancelled when the client goes away.
    private var running: [UUID] = []
    /// The read deadline, armed while the connection waits for (the rest of) a request.
    private var deadline: Scheduled<Void>?

    init(limits: HTTPLimits, admission: @escaping HTTPAdmission, handler: @escaping HTTPHandler, tasks: TaskSet) {
        self.limits = limits
        self.admission = admission
        self.handler = handler
        self.tasks = tasks
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    /// (Re)starts the read deadline.
    private func arm(_ context: ChannelHandlerContext) {
        deadline?.cancel()
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(limits.readTimeout * 1e9))) {
            let (handler, context) = bound.value
            handler.timedOut(context)
        }
    }

    private func timedOut(_ context: ChannelHandlerContext) {
        deadline = nil
        guard running.isEmpty else { return }
        if let h = head, !rejected {
            rejected = true
            respondAndClose(context, h.version, .requestTimeout,
                            "the request was not received within \(limits.readTimeout) seconds", code: "request_timeout")
        } else {
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.clear()
            received = 0
            rejected = false
            if deadline == nil { arm(context) }  // a pipelined request behind one being answered
            // A refused request is answered once its body (within the cap) has been read, so that
            // closing the connection does not reset it under a client still sending.
            refusal = admission(h)
            if let len = h.headers.first(name: "Content-Length").flatMap(Int.init), len > limits.maxBodyBytes {
                refuseOrRejectTooLarge(context, h)
            }
        case .body(var chunk):
            guard !rejected, let h = head else { return }
            received += chunk.readableBytes
            if received > limits.maxBodyBytes {
                refuseOrRejectTooLarge(context, h)
                return
            }
            if refusal == nil { body.writeBuffer(&chunk) }
        case .end:
            guard !rejected, let h = head else { return }
            if let refusal {
                rejected = true
                Self.writeFull(refusal, context.channel, h.version, keepAlive: false)
                arm(context)
                return
            }
            head = nil
            deadline?.cancel()
            deadline = nil
            let bytes = body.readableBytesView
            let request = HTTPRequest(method: h.method, path: h.uri, headers: h.headers, body: Data(bytes))
            body = ByteBuffer()
            let keepAlive = h.isKeepAlive
            let channel = context.channel
            let handler = self.handler
            let version = h.version
            let writeTimeout = limits.writeTimeout
            let id = UUID()
            let task = Task {
                let response = await handler(request)
                await Self.write(response, to: channel, version: version, keepAlive: keepAlive, writeTimeout: writeTimeout)
            }
            tasks.insert(id, task)
            running.append(id)
            let tasks = self.tasks
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            Task {
                await task.value
                tasks.remove(id)
                channel.eventLoop.execute {
                    let (me, context) = bound.value
                    me.running.removeAll { $0 == id }
                    // Answered: the connection waits for its next request, within the read deadline.
                    if me.running.isEmpty, channel.isActive { me.arm(context) }
                }
            }
        }
    }

    /// Malformed HTTP (NIO's error handler has answered 400, or headers over the cap): no more
    /// answers on this connection (it lingers, see `linger`). A socket error: it closes.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is HTTPParserError, running.isEmpty {
            rejected = true
            Self.linger(context.channel)
            arm(context)
        } else {
            context.close(promise: nil)
        }
    }

    /// The client closed the connection: its requests stop (a generation ends at the next step).
    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        for id in running { tasks.cancel(id) }
        running = []
        context.fireChannelInactive()
    }

    /// A body over the cap: the refusal when there is one (401 says more than 413), else 413.
    private func refuseOrRejectTooLarge(_ context: ChannelHandlerContext, _ h: HTTPRequestHead) {
        rejected = true
        arm(context)  // bounds the lingering close
        if let refusal {
            Self.writeFull(refusal, context.channel, h.version, keepAlive: false, linger: true)
            return
        }
        respondAndClose(context, h.version, .payloadTooLarge, "request body exceeds the limit of \(limits.maxBodyBytes) bytes",
                        code: "request_too_large", linger: true)
    }

    private func respondAndClose(_ context: ChannelHandlerContext, _ version: HTTPVersion, _ status: HTTPResponseStatus, _ message: String,
                                 code: String, linger: Bool = false) {
        let data = ServerError.errorBody(message, code: code)
        Self.writeFull(.full(status: status, headers: [("Content-Type", "application/json")], body: data), context.channel, version,
                       keepAlive: false, linger: linger)
    }

    /// Ends a connection whose client may still be sending (a body over the cap, malformed
    /// bytes): closes only the server's side, so that the answer already written is read rather
    /// than reset away; what the client still sends is discarded, and the read deadline (or the
    /// client's own close) ends the connection.
    static func linger(_ channel: Channel) {
        channel.close(mode: .output).whenFailure { _ in channel.close(promise: nil) }
    }

    /// The future-returning write (a synchronous context picks it over the async overload).
    static func flushEnd(_ channel: Channel) -> EventLoopFuture<Void> {
        channel.writeAndFlush(HTTPServerResponsePart.end(nil))
    }

    static func writeFull(_ response: HTTPResponse, _ channel: Channel, _ version: HTTPVersion, keepAlive: Bool, linger: Bool = false) {
        guard case .full(let status, let hdrs, let data) = response else { return }
        var headers = HTTPHeaders(hdrs)
        headers.replaceOrAdd(name: "Content-Length", value: "\(data.count)")
        headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: status, headers: headers)), promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: data))), promise: nil)
        let done = Self.flushEnd(channel)
        if !keepAlive { done.whenComplete { _ in if linger { Self.linger(channel) } else { channel.close(promise: nil) } } }
    }

    static func write(_ response: HTTPResponse, to channel: Channel, version: HTTPVersion, keepAlive: Bool, writeTimeout: TimeInterval) async {
        switch response {
        case .full:
            writeFull(response, channel, version, keepAlive: keepAlive)
        case .events(let stream):
            let headers = HTTPHeaders([("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                                       ("Connection", "close")])
            channel.writeAndFlush(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: .ok, headers: headers)), promise: nil)
            for await event in stream {
                guard channel.isActive else { break }
                let chunk = ByteBuffer(string: "data: \(event)\n\n")
                let sent = channel.eventLoop.makePromise(of: Void.self)
                channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(chunk)), promise: sent)
                if !channel.isWritable {
                    // Over NIO's high-water mark: the client is reading slower than the engine
                    // writes. Wait for this chunk to leave, at most writeTimeout.
                    let stalled = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(writeTimeout * 1e9))) {
                        channel.close(promise: nil)
                    }
                    _ = try? await sent.futureResult.get()
                    stalled.cancel()
                }
            }
            // Without Content-Length the body ends when the connection closes; a client that
            // stopped reading gets writeTimeout for the rest, then the close anyway.
            let stalled = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(writeTimeout * 1e9))) { channel.close(promise: nil) }
            Self.flushEnd(channel).whenComplete { _ in
                stalled.cancel()
                channel.close(promise: nil)
            }
        }
    }
}

/// A count shared by the event loops (open connections).
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    var value: Int { lock.withLock { n } }
    /// Adds one unless the count has reached `limit`; says whether it did.
    @discardableResult
    func increment(below limit: Int) -> Bool {
        lock.withLock {
            guard n < limit else { return false }
            n += 1
            return true
        }
    }
    func decrement() { lock.withLock { n -= 1 } }
}

/// Handler tasks in flight, so that shutdown can cancel and await them.
final class TaskSet: @unchecked Sendable {
    private let lock = NSLock()
    private var tasks: [UUID: Task<Void, Never>] = [:]
    func insert(_ id: UUID, _ t: Task<Void, Never>) { lock.withLock { tasks[id] = t } }
    func remove(_ id: UUID) { lock.withLock { _ = tasks.removeValue(forKey: id) } }
    func cancel(_ id: UUID) { lock.withLock { tasks[id] }?.cancel() }
    func drain() -> [Task<Void, Never>] { lock.withLock { let all = Array(tasks.values); tasks = [:]; return all } }
}
