import Foundation
import TillerTensor

// Models by their Hugging Face hub name (`ORG/NAME[@revision]`), found offline in the cache that
// transformers / huggingface_hub already filled. Nothing is downloaded.
//
// The hub cache layout (huggingface_hub's file_download):
//   <cache>/models--ORG--NAME/refs/<branch or tag>   a file holding a commit hash
//   <cache>/models--ORG--NAME/snapshots/<hash>/…     the checkout, usually symlinks into ../../blobs/

/// A model repository in the hub cache.
public struct HubModel: Sendable, Equatable {
    /// `ORG/NAME`.
    public let repo: String
    /// The revision asked for (`main` unless given).
    public let revision: String
    /// The commit hash the revision resolved to.
    public let commit: String
    /// The snapshot directory (`…/snapshots/<commit>`).
    public let snapshot: String
}

public enum HubCache {
    /// The cache directory: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    public static func directory(environment env: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let c = env["HF_HUB_CACHE"], !c.isEmpty { return (c as NSString).expandingTildeInPath }
        if let h = env["HF_HOME"], !h.isEmpty { return ((h as NSString).expandingTildeInPath as NSString).appendingPathComponent("hub") }
        return NSHomeDirectory() + "/.cache/huggingface/hub"
    }

    /// Whether `argument` has the shape of a hub name: `ORG/NAME` or `ORG/NAME@REV`, no other slashes.
    public static func looksLikeRepoName(_ argument: String) -> Bool {
        let base = argument.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)[0]
        let parts = base.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else { return false }
        return !argument.hasPrefix("/") && !argument.hasPrefix("~")
    }

    static func folderName(repo: String) -> String { "models--" + repo.replacingOccurrences(of: "/", with: "--") }

    /// Finds `ORG/NAME[@revision]` in the cache. The revision is a branch or tag under `refs/`, or
    /// a commit hash (full, or a unique prefix of at least 7 characters) under `snapshots/`.
    public static func locate(_ argument: String, environment env: [String: String] = ProcessInfo.processInfo.environment) throws -> HubModel {
        let cache = directory(environment: env)
        let pieces = argument.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
        let repo = String(pieces[0])
        let revision = pieces.count > 1 ? String(pieces[1]) : "main"
        guard !revision.isEmpty else { throw FileError(path: argument, "empty revision after '@'") }
        let root = cache + "/" + folderName(repo: repo)
        let fm = FileManager.default
        guard fm.fileExists(atPath: root) else {
            throw FileError(path: argument, "not found in the Hugging Face hub cache: tried \(root) (cache from \(cacheSource(env)))")
        }
        let snapshots = root + "/snapshots"
        let refFile = root + "/refs/" + revision
        var commit: String
        if let data = fm.contents(atPath: refFile) {
            commit = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !commit.isEmpty else { throw FileError(path: refFile, "empty ref file (an interrupted download?)") }
        } else {
            let available = ((try? fm.contentsOfDirectory(atPath: snapshots)) ?? []).sorted()
            let matches = revision.count >= 7 ? available.filter { $0.hasPrefix(revision.lowercased()) } : []
            guard matches.count == 1 else {
                let refs = ((try? fm.contentsOfDirectory(atPath: root + "/refs")) ?? []).sorted()
                let reason = matches.count > 1 ? "revision \(revision) matches several snapshots (\(matches.joined(separator: ", ")))"
                    : "revision \(revision) is neither a ref (tried \(refFile)) nor a snapshot (tried \(snapshots)/\(revision)…)"
                throw FileError(path: argument, "\(reason); cached refs: \(refs.isEmpty ? "none" : refs.joined(separator: ", ")); snapshots: \(available.isEmpty ? "none" : available.joined(separator: ", "))")
            }
            commit = matches[0]
        }
        let snapshot = snapshots + "/" + commit
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: snapshot, isDirectory: &isDir), isDir.boolValue else {
            throw FileError(path: snapshot, "\(repo)@\(revision) points at commit \(commit), whose snapshot is not in the cache")
        }
        return HubModel(repo: repo, revision: revision, commit: commit, snapshot: snapshot)
    }

    /// The model files of a snapshot: the directory when it has config.json, else its one .gguf.
    public static func modelFiles(_ model: HubModel) throws -> ModelFiles {
        let fm = FileManager.default
        if fm.fileExists(atPath: model.snapshot + "/config.json") {
            let items = (try? fm.contentsOfDirectory(atPath: model.snapshot)) ?? []
            // A symlink whose blob is missing (a partial download) reads as absent.
            let weights = items.filter { $0.hasSuffix(".safetensors") }
            guard !weights.isEmpty else {
                throw FileError(path: model.snapshot, "\(model.repo): the cached snapshot has config.json but no .safetensors weights (download them with transformers or `huggingface-cli download \(model.repo)`)")
            }
            for w in weights where !fm.fileExists(atPath: model.snapshot + "/" + w) {
                throw FileError(path: model.snapshot + "/" + w, "\(model.repo): weight file is a dangling link (its blob is missing: an interrupted download?)")
            }
            return .hfDirectory(path: model.snapshot)
        }
        let ggufs = ((try? fm.contentsOfDirectory(atPath: model.snapshot)) ?? []).filter { $0.lowercased().hasSuffix(".gguf") }.sorted()
        if ggufs.count == 1 { return .gguf(path: model.snapshot + "/" + ggufs[0]) }
        if ggufs.count > 1 {
            throw FileError(path: model.snapshot, "\(model.repo) has several GGUF files; pass one by path: \(ggufs.map { model.snapshot + "/" + $0 }.joined(separator: ", "))")
        }
        throw FileError(path: model.snapshot, "\(model.repo): the cached snapshot has neither config.json nor a .gguf file")
    }

    /// Every model repository in the cache (`models--*`), with its `main` snapshot when it has one.
    public static func list(environment env: [String: String] = ProcessInfo.processInfo.environment) -> [(repo: String, model: HubModel?, error: String?)] {
        let cache = directory(environment: env)
        let folders = ((try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []).filter { $0.hasPrefix("models--") }.sorted()
        return folders.map { folder in
            let repo = folder.dropFirst("models--".count).replacingOccurrences(of: "--", with: "/")
            do { return (repo, try locate(repo, environment: env), nil) } catch {
                // No `main` ref: take the only snapshot if there is exactly one.
                let snaps = ((try? FileManager.default.contentsOfDirectory(atPath: cache + "/" + folder + "/snapshots")) ?? []).sorted()
                if snaps.count == 1, let m = try? locate(repo + "@" + snaps[0], environment: env) { return (repo, m, nil) }
                return (repo, nil, "\(error)")
            }
        }
    }

    static func cacheSource(_ env: [String: String]) -> String {
        if let c = env["HF_HUB_CACHE"], !c.isEmpty { return "HF_HUB_CACHE" }
        if let h = env["HF_HOME"], !h.isEmpty { return "HF_HOME/hub" }
        return "the default ~/.cache/huggingface/hub; set HF_HUB_CACHE or HF_HOME to look elsewhere"
    }
}
