import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

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

/// A small HTTP/1.1 server on SwiftNIO: collects each request body (up to `maxBodyBytes`, else
/// 413 and the connection is closed), runs the async handler, writes the response. Malformed
/// HTTP gets 400 from NIO's error handler; nothing a client sends can crash it.
public final class HTTPServer: @unchecked Sendable {
    public let group: MultiThreadedEventLoopGroup
    private var channel: Channel?
    public let maxBodyBytes: Int

    public init(maxBodyBytes: Int = 4 << 20, threads: Int = 1) {
        self.maxBodyBytes = maxBodyBytes
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    }

    /// Binds and starts serving; returns the bound port (useful with port 0).
    @discardableResult
    public func start(host: String, port: Int, handler: @escaping HTTPHandler) throws -> Int {
        let limit = maxBodyBytes
        let tasks = self.tasks
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
                    channel.pipeline.addHandler(RequestHandler(limit: limit, handler: handler, tasks: tasks))
                }
            }
            .childChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 16)
        let ch = try bootstrap.bind(host: host, port: port).wait()
        channel = ch
        return ch.localAddress?.port ?? port
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
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            for t in running { await t.value }
            done.signal()
        }
        _ = done.wait(timeout: .now() + grace)
        try? group.syncShutdownGracefully()
    }

    let tasks = TaskSet()
}

private final class RequestHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let limit: Int
    let handler: HTTPHandler
    let tasks: TaskSet
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var rejected = false
    /// Handler tasks of this connection (event-loop confined), cancelled when the client goes away.
    private var running: [UUID] = []

    init(limit: Int, handler: @escaping HTTPHandler, tasks: TaskSet) {
        self.limit = limit
        self.handler = handler
        self.tasks = tasks
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.clear()
            rejected = false
            if let len = h.headers.first(name: "Content-Length").flatMap(Int.init), len > limit {
                reject(context, h)
            }
        case .body(var chunk):
            guard !rejected else { return }
            if body.readableBytes + chunk.readableBytes > limit {
                if let h = head { reject(context, h) }
                return
            }
            body.writeBuffer(&chunk)
        case .end:
            guard !rejected, let h = head else { return }
            head = nil
            let bytes = body.readableBytesView
            let request = HTTPRequest(method: h.method, path: h.uri, headers: h.headers, body: Data(bytes))
            let keepAlive = h.isKeepAlive
            let channel = context.channel
            let handler = self.handler
            let version = h.version
            let id = UUID()
            let task = Task {
                let response = await handler(request)
                await Self.write(response, to: channel, version: version, keepAlive: keepAlive)
            }
            tasks.insert(id, task)
            running.append(id)
            let tasks = self.tasks
            Task {
                await task.value
                tasks.remove(id)
                channel.eventLoop.execute { self.running.removeAll { $0 == id } }
            }
        }
    }

    /// The client closed the connection: its requests stop (a generation ends at the next step).
    func channelInactive(context: ChannelHandlerContext) {
        for id in running { tasks.cancel(id) }
        running = []
        context.fireChannelInactive()
    }

    private func reject(_ context: ChannelHandlerContext, _ h: HTTPRequestHead) {
        rejected = true
        let msg = "request body exceeds the limit of \(limit) bytes"
        let data = (try? JSONSerialization.data(withJSONObject: ["error": ["message": msg, "type": "invalid_request_error",
                                                                          "param": NSNull(), "code": "request_too_large"]])) ?? Data()
        var headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", "\(data.count)"), ("Connection", "close")])
        headers.replaceOrAdd(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: .payloadTooLarge, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: data)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }

    /// The future-returning write (a synchronous context picks it over the async overload).
    static func flushEnd(_ channel: Channel) -> EventLoopFuture<Void> {
        channel.writeAndFlush(HTTPServerResponsePart.end(nil))
    }

    static func write(_ response: HTTPResponse, to channel: Channel, version: HTTPVersion, keepAlive: Bool) async {
        switch response {
        case .full(let status, let hdrs, let data):
            var headers = HTTPHeaders(hdrs)
            headers.replaceOrAdd(name: "Content-Length", value: "\(data.count)")
            headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
            channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: status, headers: headers)), promise: nil)
            channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: data))), promise: nil)
            let done = Self.flushEnd(channel)
            if !keepAlive { done.whenComplete { _ in channel.close(promise: nil) } }
        case .events(let stream):
            let headers = HTTPHeaders([("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                                       ("Connection", "close")])
            channel.writeAndFlush(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: .ok, headers: headers)), promise: nil)
            for await event in stream {
                guard channel.isActive else { break }
                let chunk = ByteBuffer(string: "data: \(event)\n\n")
                channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(chunk)), promise: nil)
            }
            // Without Content-Length the body ends when the connection closes.
            Self.flushEnd(channel).whenComplete { _ in channel.close(promise: nil) }
        }
    }
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
