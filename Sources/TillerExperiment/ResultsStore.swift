import Foundation
import TillerTensor
import GRDB
import TillerEval

// The results database (`results.sqlite`, SQLite in WAL mode): experiments, configurations,
// generations, judge scores, the vectors used, layer norms and the scan. The judge cache
// (TillerEval's `judge_cache` table) lives in the same file, so one file is the whole record.
//
// Every row is keyed by what produced it (configuration id, question, sample), and inserts are
// INSERT OR IGNORE inside one transaction per work unit: a run killed at any moment leaves whole
// units or nothing, and the next run redoes exactly what is missing.

public struct StoreError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// One steering configuration: a variant at a layer with a coefficient, or the baseline.
public struct Configuration: Sendable, Equatable, Hashable {
    public var model: String
    public var trait: String
    /// `baseline` (no steering) or a variant name.
    public var variant: String
    /// −1 for the baseline.
    public var layer: Int
    public var scale: CoefficientScale
    /// The coefficient as the experiment gives it (absolute, or relative to the layer norm).
    public var coefficient: Double
    /// The norm of the vector added (unit vector × this); 0 for the baseline.
    public var absoluteCoefficient: Double

    public static let baselineName = "baseline"
    public var isBaseline: Bool { variant == Self.baselineName }

    /// Readable and unique: `smollm2-135m-instruct/refusal/probe_preclean_la2/L12/rel0.5`.
    public var id: String {
        if isBaseline { return "\(model)/\(trait)/baseline" }
        return "\(model)/\(trait)/\(variant)/L\(layer)/\(scale == .relative ? "rel" : "abs")\(formatCoefficient(coefficient))"
    }

    public init(model: String, trait: String, variant: String, layer: Int, scale: CoefficientScale,
                coefficient: Double, absoluteCoefficient: Double) {
        self.model = model; self.trait = trait; self.variant = variant; self.layer = layer
        self.scale = scale; self.coefficient = coefficient; self.absoluteCoefficient = absoluteCoefficient
    }

    public static func baseline(model: String, trait: String) -> Configuration {
        Configuration(model: model, trait: trait, variant: baselineName, layer: -1, scale: .absolute, coefficient: 0, absoluteCoefficient: 0)
    }
}

/// Shortest decimal text that round-trips (ids must not depend on float formatting quirks).
func formatCoefficient(_ x: Double) -> String {
    if x == x.rounded(), abs(x) < 1e15 { return String(Int64(x)) }
    return "\(x)"
}

public struct GenerationRow: Sendable, Equatable {
    public var configId: String
    public var question: Int
    public var sample: Int
    public var prompt: String
    public var response: String
    public var tokens: Int
    public var seconds: Double
    public var finish: String
}

public struct ScoreRow: Sendable, Equatable {
    public var configId: String
    public var question: Int
    public var sample: Int
    public var trait: Double?
    public var coherence: Double?
    public var relevance: Double?
    public var offTopic: Bool
    public var error: String?
}

public final class ResultsStore: @unchecked Sendable {
    /// Bumped with every migration; a database from a newer Tiller is refused.
    public static let schemaVersion = 2
    public static let format = "tiller.results"
    public let path: String
    public let db: DatabasePool

    public init(path: String, create: Bool = true) throws {
        self.path = path
        let fm = FileManager.default
        if !fm.fileExists(atPath: path) {
            guard create else { throw StoreError("\(path): no results database here (run `tiller run EXPERIMENT.yaml` first)") }
            try fm.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        }
        var config = Configuration_()
        config.busyMode = .timeout(30)
        do { db = try DatabasePool(path: path, configuration: config) } catch let e as DatabaseError {
            throw StoreError("\(path): cannot open as a results database: \(e.message ?? "\(e)")")
        }
        try checkAndMigrate()
    }

    private func checkAndMigrate() throws {
        let path = self.path
        do {
            try db.write { db in
                let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'")
                if tables.contains("meta") {
                    let fmt = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'format'")
                    guard fmt == Self.format else {
                        throw StoreError("\(path): not a Tiller results database (format \(fmt ?? "missing"))")
                    }
                    let v = Int(try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'schema_version'") ?? "") ?? 0
                    if v > Self.schemaVersion {
                        throw StoreError("\(path): written by a newer Tiller (results schema \(v); this Tiller reads up to \(Self.schemaVersion)). Upgrade Tiller, or use a new output folder.")
                    }
                } else if tables.contains(where: { !Self.judgeCacheTables.contains($0) && !$0.hasPrefix("sqlite_") && $0 != "grdb_migrations" }) {
                    throw StoreError("\(path): an SQLite database that is not a Tiller results database (tables: \(tables.sorted().joined(separator: ", ")))")
                }
            }
            try Self.migrator.migrate(db)
        } catch let e as StoreError { throw e } catch let e as DatabaseError {
            throw StoreError("\(path): cannot open as a results database: \(e.message ?? "\(e)")")
        }
    }

    /// Version 1. Later versions append migrations (and bump `schemaVersion`); old files migrate
    /// forward on open.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE experiments (
                    name TEXT PRIMARY KEY, spec TEXT NOT NULL, generation_key TEXT NOT NULL,
                    tiller_version TEXT NOT NULL, created_at TEXT NOT NULL);
                CREATE TABLE configurations (
                    id TEXT PRIMARY KEY, model TEXT NOT NULL, trait TEXT NOT NULL, variant TEXT NOT NULL,
                    layer INTEGER NOT NULL, scale TEXT NOT NULL, coefficient REAL NOT NULL,
                    absolute_coefficient REAL NOT NULL, vector_digest TEXT);
                CREATE TABLE generations (
                    config_id TEXT NOT NULL REFERENCES configurations(id), question INTEGER NOT NULL,
                    sample INTEGER NOT NULL, prompt TEXT NOT NULL, response TEXT NOT NULL, tokens INTEGER NOT NULL,
                    seconds REAL NOT NULL, finish TEXT NOT NULL, created_at TEXT NOT NULL,
                    PRIMARY KEY (config_id, question, sample));
                CREATE TABLE scores (
                    config_id TEXT NOT NULL, question INTEGER NOT NULL, sample INTEGER NOT NULL,
                    trait REAL, coherence REAL, relevance REAL, off_topic INTEGER NOT NULL, error TEXT,
                    PRIMARY KEY (config_id, question, sample));
                CREATE TABLE vectors (
                    model TEXT NOT NULL, trait TEXT NOT NULL, variant TEXT NOT NULL, layer INTEGER NOT NULL,
                    digest TEXT NOT NULL, cleaned_dims TEXT NOT NULL, file TEXT NOT NULL,
                    PRIMARY KEY (model, trait, variant, layer));
                CREATE TABLE layer_norms (
                    model TEXT NOT NULL, layer INTEGER NOT NULL, mean_norm REAL NOT NULL,
                    mean_norm_excl_massive REAL NOT NULL, excluded_dims TEXT NOT NULL,
                    PRIMARY KEY (model, layer));
                CREATE TABLE artifacts (
                    model TEXT NOT NULL, trait TEXT NOT NULL, kind TEXT NOT NULL, content TEXT NOT NULL,
                    PRIMARY KEY (model, trait, kind));
                CREATE TABLE stages (
                    name TEXT PRIMARY KEY, finished_at TEXT NOT NULL, seconds REAL NOT NULL, detail TEXT NOT NULL);
                """)
            try db.execute(sql: "INSERT INTO meta (key, value) VALUES ('format', ?), ('schema_version', '1')", arguments: [ResultsStore.format])
        }
        // v2: judge-free metrics per configuration and item, and instrument validations.
        m.registerMigration("v2") { db in
            try db.execute(sql: """
                CREATE TABLE metrics (
                    config_id TEXT NOT NULL, evaluator TEXT NOT NULL, item INTEGER NOT NULL, value REAL NOT NULL,
                    PRIMARY KEY (config_id, evaluator, item));
                CREATE TABLE validations (
                    model TEXT NOT NULL, trait TEXT NOT NULL, instrument TEXT NOT NULL, check_name TEXT NOT NULL,
                    value REAL, n INTEGER NOT NULL, threshold REAL NOT NULL, detail TEXT NOT NULL,
                    PRIMARY KEY (model, trait, instrument, check_name));
                UPDATE meta SET value = '2' WHERE key = 'schema_version';
                """)
        }
        return m
    }

    public static var tillerVersion = "0.1.0"

    // MARK: Experiments

    /// Records the experiment, or checks that a resumed run uses the same generation settings.
    public func register(_ spec: ExperimentSpec) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let specJSON = String(decoding: try enc.encode(spec), as: UTF8.self)
        let key = String(decoding: try enc.encode(spec.generationKey), as: UTF8.self)
        let path = self.path
        try db.write { db in
            if let row = try Row.fetchOne(db, sql: "SELECT generation_key FROM experiments WHERE name = ?", arguments: [spec.name]) {
                let stored: String = row["generation_key"]
                if stored != key {
                    let old = (try? JSONDecoder().decode([String: String].self, from: Data(stored.utf8))) ?? [:]
                    let changed = spec.generationKey.filter { old[$0.key] != $0.value }
                        .map { "\($0.key): \(old[$0.key] ?? "unset") → \($0.value)" }.sorted()
                    throw StoreError("\(path): experiment \(spec.name) was started with other settings (\(changed.joined(separator: "; "))). Stored answers would not be comparable: restore them, or use a new output folder.")
                }
                try db.execute(sql: "UPDATE experiments SET spec = ? WHERE name = ?", arguments: [specJSON, spec.name])
            } else {
                let others = try String.fetchAll(db, sql: "SELECT name FROM experiments")
                if !others.isEmpty {
                    throw StoreError("\(path): holds experiment \(others.joined(separator: ", ")), not \(spec.name); use another output folder")
                }
                try db.execute(sql: "INSERT INTO experiments (name, spec, generation_key, tiller_version, created_at) VALUES (?, ?, ?, ?, ?)",
                               arguments: [spec.name, specJSON, key, Self.tillerVersion, now()])
            }
        }
    }

    public func experiment() throws -> ExperimentSpec? {
        try db.read { db in
            guard let s = try String.fetchOne(db, sql: "SELECT spec FROM experiments LIMIT 1") else { return nil }
            return try JSONDecoder().decode(ExperimentSpec.self, from: Data(s.utf8))
        }
    }

    // MARK: Configurations, generations, scores

    public func insert(configurations: [Configuration], digests: [String: String] = [:]) throws {
        try db.write { db in
            for c in configurations {
                try db.execute(sql: """
                    INSERT OR IGNORE INTO configurations (id, model, trait, variant, layer, scale, coefficient, absolute_coefficient, vector_digest)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [c.id, c.model, c.trait, c.variant, c.layer, c.scale.rawValue, c.coefficient,
                                     c.absoluteCoefficient, digests[c.id]])
            }
        }
    }

    public func configurations() throws -> [Configuration] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM configurations ORDER BY id").map { r in
                Configuration(model: r["model"], trait: r["trait"], variant: r["variant"], layer: r["layer"],
                              scale: CoefficientScale(rawValue: r["scale"]) ?? .absolute, coefficient: r["coefficient"],
                              absoluteCoefficient: r["absolute_coefficient"])
            }
        }
    }

    /// One work unit's answers, all or nothing.
    public func insert(generations: [GenerationRow]) throws {
        let t = now()
        try db.write { db in
            for g in generations {
                try db.execute(sql: """
                    INSERT OR IGNORE INTO generations (config_id, question, sample, prompt, response, tokens, seconds, finish, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [g.configId, g.question, g.sample, g.prompt, g.response, g.tokens, g.seconds, g.finish, t])
            }
        }
    }

    public func insert(scores: [ScoreRow]) throws {
        try db.write { db in
            for s in scores {
                try db.execute(sql: """
                    INSERT OR IGNORE INTO scores (config_id, question, sample, trait, coherence, relevance, off_topic, error)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [s.configId, s.question, s.sample, s.trait, s.coherence, s.relevance, s.offTopic, s.error])
            }
        }
    }

    /// Keys (config|question|sample) of stored generations.
    public func generationKeys() throws -> Set<String> {
        try db.read { db in
            Set(try Row.fetchAll(db, sql: "SELECT config_id, question, sample FROM generations").map { r -> String in
                let c: String = r["config_id"]; let q: Int = r["question"]; let s: Int = r["sample"]
                return itemKey(c, q, s)
            })
        }
    }

    public func generations(configId: String? = nil) throws -> [GenerationRow] {
        try db.read { db in
            let sql = "SELECT * FROM generations" + (configId == nil ? "" : " WHERE config_id = ?") + " ORDER BY config_id, question, sample"
            return try Row.fetchAll(db, sql: sql, arguments: configId.map { [$0] } ?? []).map(Self.generation)
        }
    }

    /// Generations without a score row.
    public func unscoredGenerations() throws -> [GenerationRow] {
        try db.read { db in
            try Row.fetchAll(db, sql: """
                SELECT g.* FROM generations g LEFT JOIN scores s
                  ON s.config_id = g.config_id AND s.question = g.question AND s.sample = g.sample
                WHERE s.config_id IS NULL ORDER BY g.config_id, g.question, g.sample
                """).map(Self.generation)
        }
    }

    static func generation(_ r: Row) -> GenerationRow {
        GenerationRow(configId: r["config_id"], question: r["question"], sample: r["sample"], prompt: r["prompt"],
                      response: r["response"], tokens: r["tokens"], seconds: r["seconds"], finish: r["finish"])
    }

    public func scores() throws -> [ScoreRow] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM scores ORDER BY config_id, question, sample").map { r in
                ScoreRow(configId: r["config_id"], question: r["question"], sample: r["sample"], trait: r["trait"],
                         coherence: r["coherence"], relevance: r["relevance"], offTopic: r["off_topic"], error: r["error"])
            }
        }
    }

    // MARK: Judge-free metrics and validations

    public struct MetricRow: Sendable, Equatable {
        public var evaluator: String
        public var configId: String
        public var values: [Double]
        public init(evaluator: String, configId: String, values: [Double]) {
            self.evaluator = evaluator; self.configId = configId; self.values = values
        }
    }

    /// One work unit's metric values, all or nothing (one transaction).
    public func insert(metrics rows: [MetricRow]) throws {
        try db.write { db in
            for r in rows {
                for (i, v) in r.values.enumerated() {
                    try db.execute(sql: "INSERT OR IGNORE INTO metrics (config_id, evaluator, item, value) VALUES (?, ?, ?, ?)",
                                   arguments: [r.configId, r.evaluator, i, v])
                }
            }
        }
    }

    /// config id → item values (in item order) of one evaluator.
    public func metrics(evaluator: String) throws -> [String: [Double]] {
        try db.read { db in
            var out: [String: [Double]] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT config_id, value FROM metrics WHERE evaluator = ? ORDER BY config_id, item", arguments: [evaluator]) {
                out[r["config_id"], default: []].append(r["value"])
            }
            return out
        }
    }

    public func record(validation v: InstrumentValidation, model: String, trait: String) throws {
        try db.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO validations (model, trait, instrument, check_name, value, n, threshold, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           arguments: [model, trait, v.instrument, v.check, v.value, v.n, v.threshold, v.detail])
        }
    }

    /// Validations of (model, trait); the judge's are stored under every trait it was checked on.
    public func validations() throws -> [(model: String, trait: String, validation: InstrumentValidation)] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM validations ORDER BY model, trait, instrument, check_name").map { r -> (model: String, trait: String, validation: InstrumentValidation) in
                let v = InstrumentValidation(instrument: r["instrument"], check: r["check_name"], value: r["value"],
                                             n: r["n"], threshold: r["threshold"], detail: r["detail"])
                return (r["model"], r["trait"], v)
            }
        }
    }

    // MARK: Vectors, norms, artifacts, stages

    /// Records the vectors a sweep uses; a vector that changed since it was first used is an error
    /// (stored answers were made with the old one).
    public func record(vector digest: String, model: String, trait: String, variant: String, layer: Int,
                       cleanedDims: [Int], file: String) throws {
        let path = self.path
        try db.write { db in
            if let old = try String.fetchOne(db, sql: "SELECT digest FROM vectors WHERE model = ? AND trait = ? AND variant = ? AND layer = ?",
                                             arguments: [model, trait, variant, layer]) {
                if old != digest {
                    throw StoreError("\(path): the \(variant) vector for \(model)/\(trait) at layer \(layer) differs from the one stored answers were made with (\(file) changed). Use a new output folder, or delete the old vectors and the database together.")
                }
                return
            }
            try db.execute(sql: "INSERT INTO vectors (model, trait, variant, layer, digest, cleaned_dims, file) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           arguments: [model, trait, variant, layer, digest, cleanedDims.map(String.init).joined(separator: ","), file])
        }
    }

    /// The vectors the sweep used: per model, trait, variant and layer, the file it was read from.
    public func vectorRecords() throws -> [(model: String, trait: String, variant: String, layer: Int, file: String)] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT model, trait, variant, layer, file FROM vectors ORDER BY model, trait, variant, layer").map {
                (model: $0["model"], trait: $0["trait"], variant: $0["variant"], layer: $0["layer"], file: $0["file"])
            }
        }
    }

    public func setLayerNorm(model: String, layer: Int, mean: Double, excludingMassive: Double, excluded: [Int]) throws {
        try db.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO layer_norms (model, layer, mean_norm, mean_norm_excl_massive, excluded_dims) VALUES (?, ?, ?, ?, ?)",
                           arguments: [model, layer, mean, excludingMassive, excluded.map(String.init).joined(separator: ",")])
        }
    }

    public struct LayerNorm: Sendable, Equatable {
        public var mean: Double
        public var excludingMassive: Double
        public var excludedDims: [Int]
    }

    public func layerNorms(model: String) throws -> [Int: LayerNorm] {
        try db.read { db in
            var out: [Int: LayerNorm] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT * FROM layer_norms WHERE model = ?", arguments: [model]) {
                let dims: String = r["excluded_dims"]
                out[r["layer"]] = LayerNorm(mean: r["mean_norm"], excludingMassive: r["mean_norm_excl_massive"],
                                            excludedDims: dims.split(separator: ",").compactMap { Int($0) })
            }
            return out
        }
    }

    public func setArtifact(model: String, trait: String = "", kind: String, content: String) throws {
        try db.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO artifacts (model, trait, kind, content) VALUES (?, ?, ?, ?)",
                           arguments: [model, trait, kind, content])
        }
    }

    public func artifact(model: String, trait: String = "", kind: String) throws -> String? {
        try db.read { db in
            try String.fetchOne(db, sql: "SELECT content FROM artifacts WHERE model = ? AND trait = ? AND kind = ?", arguments: [model, trait, kind])
        }
    }

    public func finishStage(_ name: String, seconds: Double, detail: String = "") throws {
        try db.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO stages (name, finished_at, seconds, detail) VALUES (?, ?, ?, ?)",
                           arguments: [name, now(), seconds, detail])
        }
    }

    public func stageDone(_ name: String) throws -> Bool {
        try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM stages WHERE name = ?", arguments: [name]) ?? 0 } > 0
    }

    public func stages() throws -> [(name: String, seconds: Double, detail: String)] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM stages ORDER BY finished_at, name").map { ($0["name"], $0["seconds"], $0["detail"]) }
        }
    }

    public func count(_ table: String) throws -> Int {
        try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM \(table)") ?? 0 }
    }

    // MARK: Merge

    /// Tables merged row by row (INSERT OR IGNORE): primary keys make the merge idempotent.
    static let mergedTables = ["configurations", "generations", "scores", "vectors", "layer_norms", "artifacts", "metrics", "validations"]
        + judgeCacheTables
    /// The tables TillerEval's JudgeCache keeps in the results database.
    static let judgeCacheTables = ["judge_cache", "judge_scoring", "judge_prefix_cache"]

    /// Adds another results database's rows. Both must hold the same experiment with the same
    /// generation settings; an answer stored in both with different text is an error (the shards
    /// did not compute the same thing).
    public func merge(from other: String) throws -> [String: Int] {
        let src = try ResultsStore(path: other, create: false)
        guard let theirs = try src.experiment() else { throw StoreError("\(other): holds no experiment") }
        if let mine = try experiment() {
            guard mine.name == theirs.name, mine.generationKey == theirs.generationKey else {
                throw StoreError("\(other): experiment \(theirs.name) with settings \(theirs.generationKey) does not match \(mine.name) in \(path)")
            }
        } else {
            try register(theirs)
        }
        // The judge cache's tables as TillerEval's JudgeCache creates them (same columns, same order),
        // in both files (a shard written before the cache recorded readings gains its column).
        _ = try JudgeCache(writer: db)
        _ = try JudgeCache(writer: src.db)
        var added: [String: Int] = [:]
        let thisPath = path
        try db.writeWithoutTransaction { db in
            try db.execute(sql: "ATTACH DATABASE ? AS src", arguments: [other])
            defer { try? db.execute(sql: "DETACH DATABASE src") }
            try db.inTransaction {
                let conflicts = try Int.fetchOne(db, sql: """
                    SELECT COUNT(*) FROM src.generations s JOIN main.generations m
                      ON s.config_id = m.config_id AND s.question = m.question AND s.sample = m.sample
                    WHERE s.response != m.response
                    """) ?? 0
                if conflicts > 0 {
                    throw StoreError("\(other): \(conflicts) answers differ from those already in \(thisPath) for the same configuration, question and sample; the shards were not run with the same models and settings")
                }
                let vconf = try Int.fetchOne(db, sql: """
                    SELECT COUNT(*) FROM src.vectors s JOIN main.vectors m
                      ON s.model = m.model AND s.trait = m.trait AND s.variant = m.variant AND s.layer = m.layer
                    WHERE s.digest != m.digest
                    """) ?? 0
                if vconf > 0 { throw StoreError("\(other): \(vconf) steering vectors differ from those in \(thisPath); the shards extracted different vectors") }
                let srcTables = Set(try String.fetchAll(db, sql: "SELECT name FROM src.sqlite_master WHERE type = 'table'"))
                if srcTables.contains("judge_scoring") {
                    let differ = try String.fetchAll(db, sql: """
                        SELECT s.backend || ':' || s.model FROM src.judge_scoring s JOIN main.judge_scoring m ON s.backend = m.backend AND s.model = m.model
                        WHERE s.mode != m.mode OR COALESCE(s.continuation, '') != COALESCE(m.continuation, '')
                        """)
                    if let j = differ.first { throw StoreError("\(other): the judge \(j) scored with another mode than in \(thisPath); the shards' scores are not comparable") }
                }
                for t in Self.mergedTables where srcTables.contains(t) {
                    let before = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM main.\(t)") ?? 0
                    try db.execute(sql: "INSERT OR IGNORE INTO main.\(t) SELECT * FROM src.\(t)")
                    added[t] = (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM main.\(t)") ?? 0) - before
                }
                return .commit
            }
        }
        return added
    }
}

typealias Configuration_ = GRDB.Configuration

func itemKey(_ config: String, _ question: Int, _ sample: Int) -> String { "\(config)|\(question)|\(sample)" }

func now() -> String { ISO8601DateFormatter().string(from: Date()) }

/// Scores rounded to 1e-9: the judge sums its answer distribution in dictionary order, which
/// varies between processes in the last bits; rounding makes reruns and shards store identical rows.
func stable(_ x: Double?) -> Double? { x.map { ($0 * 1e9).rounded() / 1e9 } }

/// Identifies a vector in the database (FNV-1a over the float bits).
func digest(_ v: [Float]) -> String {
    var f = Fingerprint()
    f.add(v)
    return f.hex
}
