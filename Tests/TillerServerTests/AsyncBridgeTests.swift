import Foundation
import TillerAsync
import XCTest

/// The one async/sync bridge that the CLI (`blocking`), the judges (`offload`) and the server's
/// shutdown (`wait` with a grace period) share.
final class AsyncBridgeTests: XCTestCase {
    struct Boom: Error {}

    func testWaitReturnsTheValueOrGivesUpAtTheTimeout() {
        XCTAssertEqual(AsyncBridge.wait { () async -> Int in
            try? await Task.sleep(nanoseconds: 20_000_000)
            return 42
        }, 42)
        XCTAssertEqual(blocking { "done" }, "done")
        let start = Date()
        let late = AsyncBridge.wait(timeout: 0.2) { () async -> Int in
            try? await Task.sleep(nanoseconds: 3_000_000_000)
            return 1
        }
        XCTAssertNil(late)
        XCTAssertLessThan(Date().timeIntervalSince(start), 2, "the timeout bounds the wait")
    }

    func testOffloadRunsOnTheQueueAndPassesErrorsOn() async throws {
        let key = DispatchSpecificKey<String>()
        let queue = DispatchQueue(label: "bridge-test")
        queue.setSpecific(key: key, value: "bridge-test")
        let seen = try await AsyncBridge.offload(on: queue) { DispatchQueue.getSpecific(key: key) }
        XCTAssertEqual(seen, "bridge-test")
        do {
            _ = try await AsyncBridge.offload(on: queue) { () throws -> Int in throw Boom() }
            XCTFail("the error must reach the caller")
        } catch is Boom {}
    }

    /// Blocking work offloaded from many tasks at once never starves the cooperative pool:
    /// 64 tasks each block a queue thread for 50 ms, and all finish.
    func testManyOffloadsDoNotStarveTheCooperativePool() async throws {
        let start = Date()
        let total = try await withThrowingTaskGroup(of: Int.self) { g in
            for i in 0..<64 {
                g.addTask { try await AsyncBridge.offload(on: .global()) { usleep(50_000); return i } }
            }
            return try await g.reduce(0, +)
        }
        XCTAssertEqual(total, (0..<64).reduce(0, +))
        XCTAssertLessThan(Date().timeIntervalSince(start), 30)
    }
}
