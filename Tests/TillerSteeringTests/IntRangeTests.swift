import XCTest
import TillerSteering

/// One parser for "a-b[:step]" ranges (layer sweeps, scan windows, variant top-k windows).
final class IntRangeTests: XCTestCase {
    func testParsesAndRejects() throws {
        XCTAssertEqual(try IntRange(parsing: "6-18:3").values, [6, 9, 12, 15, 18])
        XCTAssertEqual(try IntRange(parsing: " 12 - 18 ").closed, 12...18)
        XCTAssertEqual(try IntRange(parsing: "6-18:3").description, "6-18:3")
        for bad in ["6", "6-", "-6-8", "a-b", "6-18:x", "6-18:3:1", "18-6", "6-18:0"] {
            XCTAssertThrowsError(try IntRange(parsing: bad), bad)
        }
        XCTAssertThrowsError(try IntRange(parsing: "6-18:3", allowStep: false))
        XCTAssertThrowsError(try IntRange(parsing: "18-6")) { XCTAssertTrue("\($0)".contains("empty"), "\($0)") }
    }
}
