import Foundation

/// Runs async work (judges) from synchronous code: the CLI commands and the experiment pipeline.
final class BlockingBox<T>: @unchecked Sendable { var value: T? }

public func blocking<T>(_ body: @escaping @Sendable () async -> T) -> T {
    let box = BlockingBox<T>()
    let sem = DispatchSemaphore(value: 0)
    Task.detached {
        box.value = await body()
        sem.signal()
    }
    sem.wait()
    return box.value!
}
