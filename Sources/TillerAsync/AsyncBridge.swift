import Dispatch
import Foundation

/// The one place where synchronous and asynchronous code meet, in both directions:
///
/// - `wait`: a synchronous caller (a CLI command, the experiment pipeline, the server's shutdown)
///   runs async work and blocks its own thread until the work is done, optionally for at most a
///   number of seconds.
/// - `offload`: async code (a judge's `judge`, a test awaiting a delegate) runs blocking work on a
///   dispatch queue and suspends meanwhile, so that no thread of Swift's cooperative pool (one per
///   core) is ever blocked by CPU-bound or waiting work.
///
/// Never call `wait` from inside a task: it would block a cooperative thread that the awaited work
/// may need.
public enum AsyncBridge {
    /// Runs `body` as a detached task and blocks the calling thread until it returns its value;
    /// with `timeout`, returns nil after that many seconds (the task goes on, unobserved).
    public static func wait<T>(timeout: Double? = nil, _ body: @escaping @Sendable () async -> T) -> T? {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            box.set(await body())
            done.signal()
        }
        if let timeout {
            guard done.wait(timeout: .now() + timeout) == .success else { return nil }
        } else {
            done.wait()
        }
        return box.take()
    }

    /// Runs blocking `body` on `queue` and suspends until it returns or throws.
    public static func offload<T>(on queue: DispatchQueue, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        let box = ResultBox<Result<T, Error>>()
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            queue.async {
                box.set(Result { try body() })
                cont.resume()
            }
        }
        return try box.take()!.get()
    }
}

/// Runs async work (judges) from synchronous code: the CLI commands and the experiment pipeline.
public func blocking<T>(_ body: @escaping @Sendable () async -> T) -> T {
    AsyncBridge.wait(body)!
}

/// A value handed from the thread that produced it to the one that waited for it (the semaphore
/// or the continuation orders the two; the lock keeps a late producer after a timeout safe).
final class ResultBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T?
    func set(_ v: T) { lock.withLock { value = v } }
    func take() -> T? { lock.withLock { value } }
}
