import Foundation
import XCTest
import TillerTensor
@testable import TillerFormats

/// Models by hub name, from a hub cache laid out as huggingface_hub writes it: content in
/// `blobs/`, `snapshots/<commit>/` holding relative symlinks to them, `refs/main` naming the commit.
final class HubCacheTests: XCTestCase {
    var cache = ""

    override func setUpWithError() throws {
        cache = NSTemporaryDirectory() + "tiller-hub-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: cache) }

    /// Writes `files` into a repo folder as blobs + symlinked snapshot, with `refs` naming commits.
    func addRepo(_ repo: String, commit: String, files: [String: String], refs: [String: String]) throws {
        let fm = FileManager.default
        let root = cache + "/models--" + repo.replacingOccurrences(of: "/", with: "--")
        try fm.createDirectory(atPath: root + "/blobs", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/snapshots/" + commit, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/refs", withIntermediateDirectories: true)
        for (name, source) in files {
            let blob = "blob-\(UUID().uuidString)"
            try fm.copyItem(atPath: source, toPath: root + "/blobs/" + blob)
            try fm.createSymbolicLink(atPath: root + "/snapshots/\(commit)/\(name)", withDestinationPath: "../../blobs/" + blob)
        }
        for (ref, c) in refs { try Data(c.utf8).write(to: URL(fileURLWithPath: root + "/refs/" + ref)) }
    }

    var shardedFiles: [String: String] {
        let dir = Fixtures.directory.appendingPathComponent("tiny-llama-sharded").path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return Dictionary(uniqueKeysWithValues: names.map { ($0, dir + "/" + $0) })
    }

    func testCacheDirectoryFollowsTheHubVariables() {
        XCTAssertEqual(HubCache.directory(environment: ["HF_HUB_CACHE": "/a/hub", "HF_HOME": "/b"]), "/a/hub")
        XCTAssertEqual(HubCache.directory(environment: ["HF_HOME": "/b"]), "/b/hub")
        XCTAssertEqual(HubCache.directory(environment: [:]), NSHomeDirectory() + "/.cache/huggingface/hub")
    }

    func testHubNameResolvesThroughRefsAndSymlinkedBlobs() throws {
        let commit = "0123456789abcdef0123456789abcdef01234567"
        try addRepo("TinyOrg/tiny-llama", commit: commit, files: shardedFiles, refs: ["main": commit + "\n"])
        let env = ["HF_HUB_CACHE": cache]
        let files = try ModelCache.resolve("TinyOrg/tiny-llama", environment: env)
        let snapshot = cache + "/models--TinyOrg--tiny-llama/snapshots/" + commit
        XCTAssertEqual(files, .hfDirectory(path: snapshot))
        // The same weights as the plain directory, read through the links.
        let viaHub = try HFWeightSource(directory: files.path)
        let direct = try HFWeightSource(directory: Fixtures.directory.appendingPathComponent("tiny-llama-sharded").path)
        XCTAssertEqual(viaHub.config, direct.config)
        XCTAssertEqual(try viaHub.checkpoint.files.first!.floats(viaHub.checkpoint.files.first!.names.first!),
                       try direct.checkpoint.files.first!.floats(direct.checkpoint.files.first!.names.first!))
        XCTAssertEqual(viaHub.names.sorted(), direct.names.sorted())

        // A revision: a commit prefix, the full commit, or another ref.
        XCTAssertEqual(try ModelCache.resolve("TinyOrg/tiny-llama@0123456", environment: env).path, snapshot)
        XCTAssertEqual(try ModelCache.resolve("TinyOrg/tiny-llama@" + commit, environment: env).path, snapshot)
        try Data(commit.utf8).write(to: URL(fileURLWithPath: cache + "/models--TinyOrg--tiny-llama/refs/v1"))
        XCTAssertEqual(try ModelCache.resolve("TinyOrg/tiny-llama@v1", environment: env).path, snapshot)

        let listed = HubCache.list(environment: env)
        XCTAssertEqual(listed.map(\.repo), ["TinyOrg/tiny-llama"])
        XCTAssertEqual(listed.first?.model?.commit, commit)
    }

    func testGGUFRepoResolvesToItsOneFile() throws {
        let gguf = NSTemporaryDirectory() + "tiller-hub-\(UUID().uuidString).gguf"
        try Data("GGUF".utf8).write(to: URL(fileURLWithPath: gguf))
        defer { try? FileManager.default.removeItem(atPath: gguf) }
        try addRepo("Org/model-GGUF", commit: "feedface00", files: ["model.Q8_0.gguf": gguf], refs: ["main": "feedface00"])
        let files = try ModelCache.resolve("Org/model-GGUF", environment: ["HF_HUB_CACHE": cache])
        XCTAssertEqual(files, .gguf(path: cache + "/models--Org--model-GGUF/snapshots/feedface00/model.Q8_0.gguf"))
    }

    func testMissingModelsNameThePlacesTried() throws {
        let env = ["HF_HUB_CACHE": cache]
        XCTAssertThrowsError(try ModelCache.resolve("NoOrg/no-model", environment: env)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(cache + "/models--NoOrg--no-model"), text)
            XCTAssertTrue(text.contains("HF_HUB_CACHE"), text)
            XCTAssertTrue(text.contains("also tried the path"), text)
        }
        let commit = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        try addRepo("TinyOrg/tiny-llama", commit: commit, files: shardedFiles, refs: ["main": commit])
        XCTAssertThrowsError(try ModelCache.resolve("TinyOrg/tiny-llama@nope", environment: env)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("refs/nope"), text)
            XCTAssertTrue(text.contains("cached refs: main"), text)
            XCTAssertTrue(text.contains(commit), text)
        }
        // A ref whose snapshot is gone.
        try Data("bbbbbbbb".utf8).write(to: URL(fileURLWithPath: cache + "/models--TinyOrg--tiny-llama/refs/dev"))
        XCTAssertThrowsError(try ModelCache.resolve("TinyOrg/tiny-llama@dev", environment: env)) { error in
            XCTAssertTrue("\(error)".contains("snapshot is not in the cache"), "\(error)")
        }
        // An interrupted download: a weight link whose blob is missing.
        let snap = cache + "/models--TinyOrg--tiny-llama/snapshots/" + commit
        try FileManager.default.removeItem(atPath: snap + "/model-00003-of-00012.safetensors")
        try FileManager.default.createSymbolicLink(atPath: snap + "/model-00003-of-00012.safetensors", withDestinationPath: "../../blobs/missing")
        XCTAssertThrowsError(try ModelCache.resolve("TinyOrg/tiny-llama", environment: env)) { error in
            XCTAssertTrue("\(error)".contains("dangling link"), "\(error)")
        }
        XCTAssertFalse(HubCache.looksLikeRepoName("a/b/c"))
        XCTAssertFalse(HubCache.looksLikeRepoName("/abs/path"))
        XCTAssertTrue(HubCache.looksLikeRepoName("google/gemma-2-2b@main"))
    }
}
