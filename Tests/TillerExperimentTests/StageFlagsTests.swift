import ArgumentParser
import Foundation
import XCTest
@testable import tiller
@testable import TillerExperiment
import TillerEval
import TillerSteering

/// The CLI and an experiment file give the same samples for the same settings: every stage
/// setting a file can state that a single-stage command (`tiller extract`, with
/// `--vetting judge`; `tiller judge --validate`; `tiller variants`) also takes is spelled as the
/// file spells it, and sets the same stage settings.
///
/// The rule (`flag(_:own:)`): a top-level key `foo_bar` is `--foo-bar`; a key of the command's
/// own section (`extraction:` for `tiller extract`) too; a key of another section
/// `--section-foo-bar` (`judge_validation.min_auc` is `--judge-validation-min-auc`); a boolean
/// key set to false is `--no-foo-bar`.
///
/// For each command the table below lists the file keys it takes. The test fails when
/// - a key's flag (by the rule) is missing, or sets other settings than the key does in a file;
/// - the command shows a flag that is neither a key's nor in its list of its own (a new flag
///   for a file setting, spelled otherwise);
/// - a stage's Settings gains a field the table does not place (a file key, or a reason why not);
/// - an old spelling is visible rather than a hidden alias.
final class StageFlagsTests: XCTestCase {
    struct Entry {
        let key: String
        /// The value as the file writes it.
        let yaml: String
        /// As the flag takes it, when it is written otherwise (a list).
        var cli: String?
        init(_ key: String, _ yaml: String, cli: String? = nil) { self.key = key; self.yaml = yaml; self.cli = cli }
    }

    static func flag(_ key: String, own: String?) -> String {
        var parts = key.split(separator: ".").map(String.init)
        if parts.count == 2, parts[0] == own { parts.removeFirst() }
        return parts.joined(separator: "-").replacingOccurrences(of: "_", with: "-")
    }

    /// The file text for `entries` (sections in flow style).
    static func yaml(_ entries: [Entry]) -> String {
        var top: [String] = [], sections: [String: [String]] = [:]
        for e in entries {
            let parts = e.key.split(separator: ".").map(String.init)
            if parts.count == 2 { sections[parts[0], default: []].append("\(parts[1]): \(e.yaml)") } else { top.append("\(e.key): \(e.yaml)") }
        }
        return (top + sections.sorted { $0.key < $1.key }.map { "\($0.key): {\($0.value.joined(separator: ", "))}" }).joined(separator: "\n")
    }

    static func args(_ entries: [Entry], own: String?) -> [String] {
        entries.flatMap { e -> [String] in
            let f = flag(e.key, own: own)
            switch e.yaml {
            case "true": return ["--" + f]
            case "false": return ["--no-" + f]
            default: return ["--" + f, e.cli ?? e.yaml]
            }
        }
    }

    /// One single-stage command: its file keys (each a group stated together), the flags that
    /// are its own (no file key), its hidden deprecated aliases, and its settings from flags and
    /// from a file, as comparable text.
    struct Command {
        let name: [String]
        let own: String?
        let base: [String]
        /// The file's keys that match `base` (a group's entries replace them).
        let baseFile: [Entry]
        let groups: [[Entry]]
        let ownFlags: Set<String>
        let hidden: Set<String>
        let fromFlags: ([String]) throws -> [String]
        let fromFile: (ExperimentSpec) throws -> [String]
    }

    static func d(_ x: Any?) -> String { x.map { String(describing: $0) } ?? "nil" }

    static func file(_ entries: [Entry]) -> String { head + yaml(entries) }
    static let head = "name: t\nmodels: [smollm2-135m-instruct]\ntraits: [refusal]\nlayers: [6]\ncoefficients: [1]\nevaluators: [logodds]\n"
    static let judge = "local:smollm2-135m-instruct"

    static let extract = Command(
        name: ["extract"], own: "extraction",
        base: ["-m", "smollm2-135m-instruct", "-t", "refusal", "-o", "out"],
        baseFile: [Entry("methods", "[probe, mean_diff]")],
        groups: [
            [Entry("extraction.form", "scenarios")], [Entry("positions", "response")], [Entry("extraction.max_new_tokens", "9")],
            [Entry("extraction.temperature", "1.0")], [Entry("extraction.top_p", "0.9")], [Entry("seed", "7")],
            [Entry("extraction.batch_size", "3")], [Entry("extraction.max_pairs", "2")], [Entry("extraction.max_questions", "3")],
            [Entry("methods", "[probe]", cli: "probe")], [Entry("device", "cpu")],
            // Vetting needs its judge, in the file as on the command line.
            [Entry("extraction.vetting", "judge"), Entry("judge", judge)],
            [Entry("extraction.min_vetted", "2")], [Entry("judge_relevance", "false")],
            [Entry("judge_validation.items", "6")], [Entry("judge_validation.min_auc", "0.8")],
            [Entry("judge_min_mass", "0.01")], [Entry("judge_prompts", "prompts")],
        ],
        // `--model` and `--trait` name one of the file's `models` and `traits`.
        ownFlags: ["model", "trait", "out", "regenerate", "allow-invalid-judge", "help", "version"],
        hidden: ["vet"],
        fromFlags: { args in
            let c = try Extract.parse(args)
            let (validation, vetting) = c.vettingStages()
            return [d(try c.extractionStage().settings), d(validation.settings), d(vetting.settings), d(c.vettingMode), d(c.vettingJudge),
                    d(c.judgeMinMass), d(c.judgePrompts), d(try c.parsedMethods().map(\.rawValue)), d(c.deviceOption.device)]
        },
        fromFile: { s in
            [d(try ExtractionStage(spec: s).settings), d(JudgeValidationStage.Settings(spec: s)), d(VettingStage.Settings(spec: s)),
             d(s.extraction.vetting), d(s.extraction.vetting == .judge ? s.judge : nil),
             d(s.judgeMinMass), d(s.judgePrompts), d(s.methods), d(s.device)]
        })

    static let judgeValidate = Command(
        name: ["judge"], own: nil,
        base: ["--judge", judge, "--validate", "--trait", "refusal"],
        baseFile: [Entry("methods", "[probe]"), Entry("judge", judge)],
        groups: [
            [Entry("judge", "openai:gpt-4.1-mini")], [Entry("judge_min_mass", "0.01")], [Entry("judge_prompts", "prompts")],
            [Entry("judge_relevance", "false")], [Entry("judge_validation.items", "6")], [Entry("judge_validation.min_auc", "0.8")],
            [Entry("seed", "7")], [Entry("device", "cpu")],
        ],
        // Scoring one pair or a file, the endpoint's connection, and the cache: no file keys
        // (`--trait` names one of the file's `traits`).
        ownFlags: ["trait", "definition", "question", "answer", "input", "no-coherence", "cache", "base-url", "api-key", "concurrency",
                   "timeout", "retries", "validate", "help", "version"],
        hidden: ["min-mass"],
        fromFlags: { args in
            let c = try JudgeCommand.parse(args)
            return [d(c.validationStage().settings), d(c.judge), d(c.minMass), d(c.promptsDirectory), d(c.judgeRelevance), d(c.deviceOption.device)]
        },
        fromFile: { s in
            [d(JudgeValidationStage.Settings(spec: s)), d(s.judge), d(s.judgeMinMass), d(s.judgePrompts), d(s.judgeRelevance), d(s.device)]
        })

    static let variants = Command(
        name: ["variants"], own: nil,
        base: ["dir", "--scan", "scan.json", "--variants", "probe"],
        baseFile: [Entry("variants", "[probe]")],
        groups: [[Entry("variants", "[probe, probe_preclean_la2, mean_diff_postclean_u1]", cli: "probe,probe_preclean_la2,mean_diff_postclean_u1")]],
        // The scan file, the default grid's sizes (`--la`, `--u`: the file lists its variants)
        // and the llama.cpp export.
        ownFlags: ["scan", "la", "u", "gguf", "help", "version"],
        hidden: [],
        fromFlags: { args in [d(try Variants.parse(args).variantsStage().settings.variants)] },
        fromFile: { s in [d(try VariantsStage.Settings(spec: s).variants)] })

    static let commands = [extract, judgeValidate, variants]

    /// Each key's flag sets exactly what the key sets in a file, and the defaults agree.
    func testEachFileKeyIsTheSameFlagWithTheSameEffect() throws {
        for c in Self.commands {
            let plain = try ExperimentSpec.parse(Self.file(c.baseFile), path: "x.yaml")
            XCTAssertEqual(try c.fromFlags(c.base), try c.fromFile(plain), "\(c.name[0]): the defaults differ")
            for group in c.groups {
                let label = "\(c.name[0]) " + group.map(\.key).joined(separator: " + ")
                let spec = try ExperimentSpec.parse(Self.file(c.baseFile.filter { b in !group.contains { $0.key == b.key } } + group), path: "x.yaml")
                let file = try c.fromFile(spec)
                XCTAssertNotEqual(file, try c.fromFile(plain), "\(label): the test's value is the default, so it checks nothing")
                let args = c.base + Self.args(group, own: c.own)
                // A flag that does not parse fails here too (XCTAssertEqual records the error).
                XCTAssertEqual(try c.fromFlags(args), file, "\(label): \(args.joined(separator: " ")) sets other settings than the file")
            }
        }
    }

    /// The flags the binary shows are the keys' flags and the command's own, nothing else; the
    /// old spellings are hidden.
    func testCommandsShowOnlyTheKeysFlagsAndTheirOwn() throws {
        for c in Self.commands {
            let (status, out, err) = try tiller(c.name + ["--experimental-dump-help"])
            XCTAssertEqual(status, 0, err)
            let info = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            let arguments = try XCTUnwrap((info["command"] as? [String: Any])?["arguments"] as? [[String: Any]])
            var visible = Set<String>(), hidden = Set<String>()
            for a in arguments {
                let longs = (a["names"] as? [[String: Any]] ?? []).filter { $0["kind"] as? String == "long" }.compactMap { $0["name"] as? String }
                if a["shouldDisplay"] as? Bool == false { hidden.formUnion(longs) } else { visible.formUnion(longs) }
            }
            var keyFlags = Set<String>()
            for e in c.groups.joined() {
                let f = Self.flag(e.key, own: c.own)
                keyFlags.insert(f)
                if e.yaml == "false" { keyFlags.insert("no-" + f) }
            }
            XCTAssertEqual(visible.subtracting(keyFlags).subtracting(c.ownFlags), [], "\(c.name[0]): flags that are neither a file key's nor the command's own")
            XCTAssertEqual(keyFlags.subtracting(visible), [], "\(c.name[0]): file keys without their flag")
            XCTAssertEqual(hidden, c.hidden, "\(c.name[0]): hidden (deprecated) flags")
        }
    }

    /// Every field of the stages' Settings is placed: the file key that states it (which the
    /// tables above check against the commands), or why no file states it.
    func testEveryStageSettingIsPlaced() {
        let placed: [(String, Any, [String: String])] = [
            ("ExtractionSettings", ExtractionSettings(), [
                "form": "extraction.form", "positions": "positions", "maxNewTokens": "extraction.max_new_tokens",
                "temperature": "extraction.temperature", "topP": "extraction.top_p", "seed": "seed", "batchSize": "extraction.batch_size",
                "maxPairs": "extraction.max_pairs", "maxQuestions": "extraction.max_questions"]),
            ("VettingStage.Settings", VettingStage.Settings(), [
                "minVetted": "extraction.min_vetted", "relevance": "judge_relevance",
                "threshold": "no file key: persona_vectors' split at 50", "minCoherence": "no file key: persona_vectors' 50"]),
            ("JudgeValidationStage.Settings", JudgeValidationStage.Settings(), [
                "items": "judge_validation.items", "minAUC": "judge_validation.min_auc", "relevance": "judge_relevance", "seed": "seed"]),
            ("VariantsStage.Settings", VariantsStage.Settings(variants: []), [
                "variants": "variants", "layers": "no flag: `tiller variants` builds every captured layer; the file's layers"]),
        ]
        let keys = Set(Self.commands.flatMap { $0.groups.joined().map(\.key) })
        for (name, value, table) in placed {
            let fields = Set(Mirror(reflecting: value).children.compactMap(\.label))
            XCTAssertEqual(fields, Set(table.keys), "\(name): fields the table does not place, or places but the struct lacks")
            for (field, key) in table where !key.hasPrefix("no ") {
                XCTAssertTrue(keys.contains(key), "\(name).\(field): its file key \(key) is in no command's table")
            }
        }
    }
}
