// The real-model helpers (loadRealModel, SharedModels, smolFile, gemmaFile) live in TillerTestSupport.
@_exported import TillerTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TillerFormats
import TillerModels
import TillerAsync
import TillerSteering
import XCTest
@testable import TillerServer

/// What the server tests share: a server on loopback over SmolLM2-135M-Instruct (port 0), plain
/// HTTP requests, the engine's own answers to compare with, and a recorder of streamed events.
class ServerTestCase: XCTestCase {
    static var vectorPath: String = {
        // A fixed random direction (seeded), scaled so that steering visibly changes greedy text.
        var rng = SplitMix64(seed: 7)
        let v = (0..<576).map { _ in Float(Double(rng.next() >> 11) * 0x1p-53 * 2 - 1) }
        var w = SafetensorsWriter(metadata: [:])
        try! w.add("layer.10", floats: v, shape: [576])
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("serve-test-vec-\(getpid()).safetensors").path
        try! w.write(to: path)
        return path
    }()

    func makeServer(maxBatch: Int = 32, window: Double = 0.01, file: String = smolFile, name: String = "smollm2-135m-instruct",
                    configure: (inout ChatServer.Options) -> Void = { _ in }) throws -> (ChatServer, URL) {
        let model = try SharedModels.shared.get(file, name: name)
        let vectors = VectorStore()
        if file == smolFile { try vectors.add(name: "random", path: Self.vectorPath) }  // SmolLM2's hidden size
        var o = ChatServer.Options()
        o.port = 0
        o.maxBatch = maxBatch
        o.batchWindow = window
        o.maxBodyBytes = 64 << 10
        configure(&o)
        let server = try ChatServer(model: model, vectors: vectors, options: o)
        let port = try server.start()
        return (server, URL(string: "http://127.0.0.1:\(port)")!)
    }

    /// Enough connections for every request of the load test at once (the shared session allows ~6).
    static let session: URLSession = {
        let c = URLSessionConfiguration.ephemeral
        c.httpMaximumConnectionsPerHost = 64
        c.timeoutIntervalForRequest = 600
        c.timeoutIntervalForResource = 600
        return URLSession(configuration: c)
    }()

    func post(_ base: URL, _ body: Any, path: String = "/v1/chat/completions", headers: [String: String] = [:]) async throws -> (Int, [String: Any], Data) {
        var req = URLRequest(url: base.appendingPathComponent(path))
        req.httpMethod = "POST"
        for (k, v) in headers { req.setValue(v, forHTTPHeaderField: k) }
        if let d = body as? Data { req.httpBody = d } else { req.httpBody = try JSONSerialization.data(withJSONObject: body) }
        req.timeoutInterval = 300
        let (data, resp) = try await Self.session.data(for: req)
        let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        return ((resp as! HTTPURLResponse).statusCode, obj, data)
    }

    func content(_ obj: [String: Any]) -> String? {
        ((obj["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String
    }

    func chat(_ text: String, maxTokens: Int = 12, extra: [String: Any] = [:]) -> [String: Any] {
        var b: [String: Any] = ["model": "smollm2-135m-instruct", "messages": [["role": "user", "content": text]],
                                "max_tokens": maxTokens, "temperature": 0]
        for (k, v) in extra { b[k] = v }
        return b
    }

    func engineGreedy(_ server: ChatServer, _ text: String, maxTokens: Int, steering: SteeringSpec? = nil) throws -> String {
        try engine(server, text, GenerationOptions(maxNewTokens: maxTokens), steering: steering)
    }

    func engine(_ server: ChatServer, _ text: String, _ options: GenerationOptions, steering: SteeringSpec? = nil) throws -> String {
        let ids = try server.encode([.init(role: "user", content: text)])
        return try server.model.generate([ids], options: options, steering: [steering])[0].text!
    }


    func rawSend(port: Int, _ data: Data) throws {
        let fd = connectLoopback(port: port)
        defer { if fd >= 0 { close(fd) } }
        XCTAssertGreaterThanOrEqual(fd, 0)
        _ = data.withUnsafeBytes { send(fd, $0.baseAddress, data.count, 0) }
        var buf = [UInt8](repeating: 0, count: 512)
        let n = recv(fd, &buf, 512, 0)
        XCTAssertTrue(n <= 0 || String(decoding: buf[..<max(n, 0)], as: UTF8.self).contains("400"))
    }


    /// Events as they arrive on the wire, with their arrival times.
    final class EventRecorder: NSObject, URLSessionDataDelegate, @unchecked Sendable {
        let start = Date()
        private let lock = NSLock()
        private var buffer = ""
        private(set) var events: [(seconds: Double, payload: String)] = []
        let done = DispatchSemaphore(value: 0)
        var cancelAfterFirstContent = false
        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
            lock.withLock {
                buffer += String(decoding: data, as: UTF8.self)
                while let r = buffer.range(of: "\n\n") {
                    let e = String(buffer[..<r.lowerBound])
                    buffer.removeSubrange(..<r.upperBound)
                    events.append((Date().timeIntervalSince(start), e.hasPrefix("data: ") ? String(e.dropFirst(6)) : e))
                }
            }
            if cancelAfterFirstContent, lock.withLock({ events.count >= 2 }) { dataTask.cancel() }
        }
        func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) { done.signal() }
        var snapshot: [(seconds: Double, payload: String)] { lock.withLock { events } }
    }

    func stream(_ base: URL, _ body: [String: Any], path: String = "/v1/chat/completions", cancelAfterFirstContent: Bool = false) async throws -> EventRecorder {
        let rec = EventRecorder()
        rec.cancelAfterFirstContent = cancelAfterFirstContent
        let session = URLSession(configuration: .ephemeral, delegate: rec, delegateQueue: nil)
        var req = URLRequest(url: base.appendingPathComponent(path))
        req.httpMethod = "POST"
        req.httpBody = try JSONSerialization.data(withJSONObject: body)
        req.timeoutInterval = 300
        session.dataTask(with: req).resume()
        try await AsyncBridge.offload(on: .global()) { rec.done.wait() }
        session.finishTasksAndInvalidate()
        return rec
    }

    func deltaText(_ payload: String) -> String? {
        guard let o = try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any],
              let c = (o["choices"] as? [[String: Any]])?.first else { return nil }
        return (c["delta"] as? [String: Any])?["content"] as? String
    }

}

/// A TCP socket connected to 127.0.0.1:`port`, or -1.
/// `receiveBuffer`: SO_RCVBUF in bytes, set before connecting (a client that reads slowly fills it soon).
func connectLoopback(port: Int, receiveBuffer: Int32? = nil) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return -1 }
    if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    if rc != 0 { close(fd); return -1 }
    return fd
}
