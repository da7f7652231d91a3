import Foundation
import Synchronization
import XCTest
import TillerTensor

final class WorkerPoolTests: XCTestCase {
    func testEveryIndexRunsExactlyOnce() {
        for threads in [1, 2, 3, 8] {
            let pool = WorkerPool(threadCount: threads)
            for n in [0, 1, 2, 7, 64, 1000] {
                let counts = UnsafeMutablePointer<Int>.allocate(capacity: max(n, 1))
                counts.initialize(repeating: 0, count: max(n, 1))
                defer { counts.deallocate() }
                for _ in 0..<20 {
                    pool.parallelFor(n) { i in counts[i] += 1 }
                }
                for i in 0..<n { XCTAssertEqual(counts[i], 20, "threads \(threads), n \(n), index \(i)") }
            }
        }
    }

    func testWorkIsSharedAcrossThreads() {
        let pool = WorkerPool(threadCount: 2)
        let seen = Mutex<Set<UInt>>([])
        pool.parallelFor(64) { _ in
            let me = UInt(bitPattern: Int(bitPattern: pthread_self()))
            seen.withLock { _ = $0.insert(me) }
            usleep(1000)  // long enough that the second thread gets some of the iterations
        }
        XCTAssertEqual(seen.withLock { $0.count }, 2)
    }

    func testNestedAndConcurrentCallsComplete() {
        let pool = WorkerPool(threadCount: 2)
        let total = Atomic<Int>(0)
        pool.parallelFor(8) { _ in
            pool.parallelFor(8) { _ in total.add(1, ordering: .relaxed) }
        }
        XCTAssertEqual(total.load(ordering: .relaxed), 64)

        total.store(0, ordering: .relaxed)
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<200 { pool.parallelFor(10) { _ in total.add(1, ordering: .relaxed) } }
        }
        XCTAssertEqual(total.load(ordering: .relaxed), 4 * 200 * 10)
    }

    func testSleepingWorkersWakeUp() {
        let pool = WorkerPool(threadCount: 2)
        let total = Atomic<Int>(0)
        for _ in 0..<3 {
            usleep(5000)  // past the spin window: workers are asleep
            pool.parallelFor(100) { _ in total.add(1, ordering: .relaxed) }
        }
        XCTAssertEqual(total.load(ordering: .relaxed), 300)
    }

    func testCallOverheadIsSmall() {
        let pool = WorkerPool(threadCount: 2)
        let sink = Atomic<Int>(0)
        pool.parallelFor(2) { _ in sink.add(1, ordering: .relaxed) }
        let calls = 20000
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<calls { pool.parallelFor(4) { _ in sink.add(1, ordering: .relaxed) } }
        let perCall = Double(DispatchTime.now().uptimeNanoseconds - start) / Double(calls) / 1000
        print("WorkerPool: \(String(format: "%.2f", perCall)) µs per parallelFor(4) on 2 threads")
        // Generous bound: the machine is shared; the point is to catch a per-call thread spawn.
        XCTAssertLessThan(perCall, 200)
    }
}

final class VectorExpTests: XCTestCase {
    /// `vexp` (the attention softmax's exponential) against libm over the range softmax uses and
    /// beyond: within 2 ulp of Foundation.exp, exactly 1 at 0.
    func testVexpIsWithinTwoUlpOfLibm() {
        var worstUlp: Float = 0
        var x: Float = -87
        while x <= 88 {
            let lanes = SIMD8<Float>(x, x + 0.001, x + 0.0173, x + 0.25, x + 0.5, x + 0.618, x + 0.75, x + 0.9)
            let v = vexp(lanes)
            for i in 0..<8 where lanes[i] <= 88 {
                let ref = Foundation.exp(lanes[i])
                worstUlp = max(worstUlp, abs(v[i] - ref) / ref.ulp)
            }
            x += 0.37
        }
        print("vexp worst error: \(worstUlp) ulp")
        XCTAssertLessThanOrEqual(worstUlp, 2)
        XCTAssertEqual(vexp(SIMD8<Float>(repeating: 0))[0], 1)
        XCTAssertLessThan(vexp(SIMD8<Float>(repeating: -1000))[0], 1e-37)
    }

    /// `vtanh` (Gemma 2's logit and attention soft-caps) against fp64 tanh, across the switch from
    /// its polynomial to its exponential form at 1/4 and into saturation; and the soft-cap of a row
    /// with a tail against the scalar formula.
    func testVtanhIsWithinAFewUlpOfLibm() {
        var worstUlp: Float = 0
        var x: Float = -12
        while x <= 12 {
            let lanes = SIMD8<Float>(x, x + 0.0007, -x * 0.01, x * 0.02, x + 0.25, 0.2499 + x * 1e-4, x * 1e-6, x + 0.9)
            let v = vtanh(lanes)
            for i in 0..<8 {
                let ref = Float(Foundation.tanh(Double(lanes[i])))
                worstUlp = max(worstUlp, abs(v[i] - ref) / max(ref.magnitude.ulp, Float.leastNormalMagnitude))
            }
            x += 0.0137
        }
        print("vtanh worst error: \(worstUlp) ulp")
        XCTAssertLessThanOrEqual(worstUlp, 8)
        XCTAssertEqual(vtanh(SIMD8<Float>(repeating: 0))[0], 0)
        XCTAssertEqual(vtanh(SIMD8<Float>(repeating: -.infinity))[0], -1)
        XCTAssertEqual(vtanh(SIMD8<Float>(repeating: 200))[0], 1)
        XCTAssertTrue(vtanh(SIMD8<Float>(repeating: .nan))[0].isNaN)
        var row = (0..<29).map { Float($0) * 7.3 - 100 }
        let expected = row.map { 50 * Float(Foundation.tanh(Double($0 / 50))) }
        row.withUnsafeMutableBufferPointer { softcapInPlace($0.baseAddress!, cap: 50, count: 29) }
        for (a, b) in zip(row, expected) { XCTAssertEqual(a, b, accuracy: 8 * b.magnitude.ulp + 1e-6) }
        XCTAssertEqual(row.withUnsafeBufferPointer { maxValue($0.baseAddress!, count: 29) }, row.max())
    }

    /// The logits rows' log-sum-exp (every teacher-forced score and the local judge use it)
    /// against fp64 libm, on vocabularies of SmolLM2's and Gemma 3's sizes and on odd lengths.
    func testLogSumExpMatchesFP64() {
        var worst = 0.0
        for n in [1, 7, 8, 63, 64, 65, 1000, 49_152, 262_144] {
            // A Weyl sequence spread over [-25, 15): logits-like, deterministic.
            let row = (0..<n).map { i in Float((Double(i * 7 + n) * 0.618_033_988_749_9).truncatingRemainder(dividingBy: 1) * 40 - 25) }
            var m = -Double.infinity
            for v in row { m = max(m, Double(v)) }
            let ref = m + Foundation.log(row.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) })
            let got = row.withUnsafeBufferPointer { logSumExp($0.baseAddress!, count: n) }
            worst = max(worst, abs(got - ref))
        }
        print("logSumExp worst absolute error: \(worst)")
        XCTAssertLessThan(worst, 1e-6)
        var spiky = [Float](repeating: -1e30, count: 100)
        spiky[37] = 3
        XCTAssertEqual(spiky.withUnsafeBufferPointer { logSumExp($0.baseAddress!, count: 100) }, 3, accuracy: 1e-12)
        var bad = [Float](repeating: 0, count: 20)
        bad[13] = .nan
        XCTAssertTrue(bad.withUnsafeBufferPointer { logSumExp($0.baseAddress!, count: 20) }.isNaN)
        bad[3] = .nan
        XCTAssertTrue(bad.withUnsafeBufferPointer { logSumExp($0.baseAddress!, count: 3) }.isFinite)
    }
}
