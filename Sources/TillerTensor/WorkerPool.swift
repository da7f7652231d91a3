import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A persistent set of threads that run the iterations of `parallelFor` together with the caller.
///
/// A call costs a few microseconds while the workers are awake: they spin for a short while after
/// each job (decode issues one matmul every few µs), then sleep on a condition variable.
/// `DispatchQueue.concurrentPerform` costs 20–40 µs per call, too much for a per-layer matvec.
///
/// Iterations are handed out one at a time from a shared counter, so callers should pass a
/// number of chunks (tiles of rows), not elements. A call made while the pool is already running
/// a job (from a worker, or from a second thread) runs its iterations on the calling thread.
public final class WorkerPool: @unchecked Sendable {
    /// The process-wide pool: `TILLER_THREADS` threads if set, else the active processor count.
    public static let shared = WorkerPool(threadCount: WorkerPool.defaultThreadCount())

    /// Threads taking part in a job, the caller included.
    public let threadCount: Int

    // The workers hold the shared state, not the pool, so the pool's deinit can stop them.
    private let state: PoolState
    private var threads: [pthread_t] = []

    public static func defaultThreadCount() -> Int {
        if let text = ProcessInfo.processInfo.environment["TILLER_THREADS"], let n = Int(text), n > 0 {
            return n
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    public init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
        state = PoolState(threadCount: self.threadCount)
        for _ in 1..<self.threadCount {
            let context = Unmanaged.passRetained(state).toOpaque()
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                Unmanaged<PoolState>.fromOpaque(raw!).takeRetainedValue().workerLoop()
                return nil
            }, context)
            precondition(rc == 0, "WorkerPool: pthread_create failed (\(rc))")
            threads.append(thread)
        }
    }

    deinit {
        state.stop()
        for t in threads { pthread_join(t, nil) }
    }

    /// Runs `body(i)` for every i in 0..<n, spread over the pool's threads, and returns when all
    /// have finished. Iterations run concurrently and in no particular order.
    public func parallelFor(_ n: Int, _ body: (Int) -> Void) {
        state.parallelFor(n, body)
    }
}

private final class PoolState: @unchecked Sendable {
    let threadCount: Int
    /// Bumped once per job; idle workers watch it (a plain word is cheap to poll).
    private let epoch = Atomic<Int>(0)
    /// (job's epoch, n << 32 | next index): claiming an index and checking that the job is still
    /// the one a worker woke up for is a single compare-exchange, so a worker that was descheduled
    /// and comes back late can never run an iteration of a finished job.
    private let claim = Atomic<WordPair>(WordPair(first: 0, second: 0))
    private let completed = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)

    // The current job's body; written before `claim` is published, read only by a thread that
    // has claimed one of its iterations.
    private var jobBody: ((Int) -> Void)?

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let wake: UnsafeMutablePointer<pthread_cond_t>

    /// An idle worker polls this long, then polls with sched_yield (so that on a busy machine it
    /// gives its core away) up to `yieldNanoseconds`, then sleeps.
    private static let spinNanoseconds: UInt64 = 30_000
    private static let yieldNanoseconds: UInt64 = 500_000

    init(threadCount: Int) {
        self.threadCount = threadCount
        mutex = .allocate(capacity: 1)
        wake = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
    }

    deinit {
        pthread_cond_destroy(wake)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        wake.deallocate()
    }

    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        epoch.add(1, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(wake)
        pthread_mutex_unlock(mutex)
    }

    func parallelFor(_ n: Int, _ body: (Int) -> Void) {
        if n <= 0 { return }
        if n == 1 || threadCount == 1 || n >= 1 << 31
            || !busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
            for i in 0..<n { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            jobBody = body
            completed.store(0, ordering: .relaxed)
            let tag = UInt(bitPattern: epoch.load(ordering: .relaxed) &+ 1)
            claim.store(WordPair(first: tag, second: UInt(n) << 32), ordering: .releasing)
            epoch.store(Int(bitPattern: tag), ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                pthread_mutex_lock(mutex)
                pthread_cond_broadcast(wake)
                pthread_mutex_unlock(mutex)
            }
            runIterations(tag: tag)
            // Iterations claimed by workers may still be running; `body` must outlive them.
            var polls = 0
            while completed.load(ordering: .acquiring) < n {
                polls &+= 1
                if polls & 255 == 0 { sched_yield() }
            }
            jobBody = nil
        }
        busy.store(false, ordering: .releasing)
    }

    /// Claims and runs iterations of the job tagged `tag` until none are left.
    private func runIterations(tag: UInt) {
        var current = claim.load(ordering: .acquiring)
        while true {
            guard current.first == tag else { return }
            let n = current.second >> 32, i = current.second & 0xFFFF_FFFF
            guard i < n else { return }
            let (exchanged, original) = claim.compareExchange(
                expected: current, desired: WordPair(first: tag, second: current.second &+ 1),
                ordering: .acquiringAndReleasing)
            if exchanged {
                jobBody.unsafelyUnwrapped(Int(i))
                completed.add(1, ordering: .releasing)
                current = claim.load(ordering: .acquiring)
            } else {
                current = original
            }
        }
    }

    func workerLoop() {
        // Not a fresh load: a job published before this thread got going must not be missed.
        var seen = 0
        while true {
            var current = epoch.load(ordering: .acquiring)
            if current == seen {
                let start = DispatchTime.now().uptimeNanoseconds
                var polls = 0
                while current == seen {
                    polls &+= 1
                    if polls & 255 == 0 {
                        let waited = DispatchTime.now().uptimeNanoseconds &- start
                        if waited > Self.yieldNanoseconds {
                            current = sleepUntilEpoch(changesFrom: seen)
                            break
                        } else if waited > Self.spinNanoseconds {
                            sched_yield()
                        }
                    }
                    current = epoch.load(ordering: .acquiring)
                }
            }
            seen = current
            if stopping.load(ordering: .acquiring) { return }
            runIterations(tag: UInt(bitPattern: current))
        }
    }

    private func sleepUntilEpoch(changesFrom seen: Int) -> Int {
        pthread_mutex_lock(mutex)
        sleepers.add(1, ordering: .sequentiallyConsistent)
        var current = epoch.load(ordering: .sequentiallyConsistent)
        while current == seen {
            pthread_cond_wait(wake, mutex)
            current = epoch.load(ordering: .sequentiallyConsistent)
        }
        sleepers.subtract(1, ordering: .sequentiallyConsistent)
        pthread_mutex_unlock(mutex)
        return current
    }
}
