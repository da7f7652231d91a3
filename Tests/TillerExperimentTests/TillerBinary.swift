import Foundation
import XCTest
@testable import TillerExperiment

/// The `tiller` binary, for the tests that run it as a researcher does.
extension XCTestCase {
    /// The tiller binary sits next to the test bundle (SwiftPM builds it with the tests).
    func tillerBinary() throws -> String {
        let here = Bundle(for: type(of: self)).bundleURL
        let candidates = [here.appendingPathComponent("tiller").path, here.deletingLastPathComponent().appendingPathComponent("tiller").path]
        guard let bin = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            XCTFail("the tiller binary is missing (looked at \(candidates.joined(separator: ", "))): the test runs it; `swift build` builds it")
            throw StoreError("no tiller binary")
        }
        return bin
    }

    /// Runs the tiller binary; returns (exit status, stdout, stderr).
    func tiller(_ args: [String]) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try tillerBinary())
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}
