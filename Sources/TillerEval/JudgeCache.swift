import Foundation
import GRDB

/// Judge answers keyed by (backend, model, reading, prompt) in a SQLite database (the results
/// database of a sweep, or a file of its own), so re-runs and resumed sweeps do not ask twice.
/// The reading (`JudgeReading.key`: scoring mode, algorithm version, cut-off, top-k) is in the
/// key so that an answer read one way is never reused by a judge that reads another way.
/// Stored: the answer distribution over 0…100 and its mass; the score is recomputed on read, so
/// the minimum-mass setting can change without invalidating anything. Beside the answers: each
/// remote judge's scoring mode (`judge_scoring`) and the digit tree's prefix calls
/// (`judge_prefix_cache`); both tables are created when missing, so older files gain them.
public final class JudgeCache: Sendable {
    public let writer: any DatabaseWriter

    /// Opens (creating if needed) the database at `path`.
    public convenience init(path: String) throws {
        do {
            try self.init(writer: DatabaseQueue(path: path))
        } catch let e as DatabaseError {
            throw JudgeError.configuration("cannot open judge cache \(path): \(e.message ?? "\(e)")")
        }
    }

    /// A cache that lives as long as the process (tests, one-off scoring).
    public static func inMemory() throws -> JudgeCache { try JudgeCache(writer: DatabaseQueue()) }

    /// Uses an open database (e.g. the results database); creates the table if missing.
    public init(writer: any DatabaseWriter) throws {
        self.writer = writer
        // A plain CREATE IF NOT EXISTS, not a migrator: the results database has its own migrations.
        try writer.write { db in
            try db.execute(sql: Self.scoringTable)
            try Self.createAnswers(db)
            // The digit tree's calls after the first (prefix "" is the first call): the next
            // token's top log-probabilities as [[token, logprob], …].
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS judge_prefix_cache (
                    backend TEXT NOT NULL,
                    model TEXT NOT NULL,
                    prompt TEXT NOT NULL,
                    prefix TEXT NOT NULL,
                    top_logprobs TEXT NOT NULL,
                    created_at TEXT NOT NULL,
                    PRIMARY KEY (backend, model, prompt, prefix)
                )
                """)
        }
    }

    static let answersTable = """
        CREATE TABLE IF NOT EXISTS judge_cache (
            backend TEXT NOT NULL,
            model TEXT NOT NULL,
            reading TEXT NOT NULL,
            prompt TEXT NOT NULL,
            distribution TEXT NOT NULL,
            mass REAL NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (backend, model, reading, prompt)
        )
        """

    /// Creates the answers table, or gives a table written before readings were recorded its
    /// `reading` column: each judge's answers get the key of the reading they were read with
    /// where that reading has not changed since (`JudgeReading.legacyKey`), else one no judge
    /// reads (they stay in the file, and are asked again).
    static func createAnswers(_ db: Database) throws {
        guard try db.tableExists("judge_cache") else { return try db.execute(sql: answersTable) }
        guard try !db.columns(in: "judge_cache").contains(where: { $0.name == "reading" }) else { return }
        // Each judge's mode, read while its answers are still in place (a remote judge with
        // answers and no stored mode scored first-token).
        let judges = try Row.fetchAll(db, sql: "SELECT DISTINCT backend, model FROM judge_cache").map { row in
            let backend: String = row["backend"], model: String = row["model"]
            return (backend, model, backend == "local" ? .teacherForced : try recordedScoring(db, backend: backend, model: model))
        }
        try db.execute(sql: "ALTER TABLE judge_cache RENAME TO judge_cache_before_readings")
        try db.execute(sql: answersTable)
        for (backend, model, scoring) in judges {
            try db.execute(sql: """
                INSERT INTO judge_cache (backend, model, reading, prompt, distribution, mass, created_at)
                SELECT backend, model, ?, prompt, distribution, mass, created_at FROM judge_cache_before_readings WHERE backend = ? AND model = ?
                """, arguments: [JudgeReading.legacyKey(scoring), backend, model])
        }
        try db.execute(sql: "DROP TABLE judge_cache_before_readings")
    }

    /// One scoring mode per judge (backend, model), detected once: answers cached for it were all
    /// scored that way, so a resumed run keeps it.
    static let scoringTable = """
        CREATE TABLE IF NOT EXISTS judge_scoring (
            backend TEXT NOT NULL,
            model TEXT NOT NULL,
            mode TEXT NOT NULL,
            continuation TEXT,
            detected_at TEXT NOT NULL,
            PRIMARY KEY (backend, model)
        )
        """

    /// The judge's stored scoring mode. A judge with answers cached but no mode stored scored them
    /// before modes existed, with the first token's log-probabilities: that is its mode.
    public func scoring(backend: String, model: String) throws -> JudgeScoring? {
        try writer.read { try Self.recordedScoring($0, backend: backend, model: model) }
    }

    /// `scoring(backend:model:)` on an open database, creating nothing (a report reads it so).
    public static func recordedScoring(_ db: Database, backend: String, model: String) throws -> JudgeScoring? {
        if let stored = try storedScoring(db, backend: backend, model: model) { return stored }
        guard backend == "openai", try db.tableExists("judge_cache") else { return nil }
        let answered = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM judge_cache WHERE backend = ? AND model = ?", arguments: [backend, model]) ?? 0
        return answered > 0 ? .firstToken : nil
    }

    static func storedScoring(_ db: Database, backend: String, model: String) throws -> JudgeScoring? {
        guard try db.tableExists("judge_scoring"),
              let row = try Row.fetchOne(db, sql: "SELECT mode, continuation FROM judge_scoring WHERE backend = ? AND model = ?",
                                         arguments: [backend, model]) else { return nil }
        let modeText: String = row["mode"], styleText: String? = row["continuation"]
        guard let mode = JudgeScoringMode(rawValue: modeText) else {
            throw JudgeError.configuration("the judge cache stores an unknown scoring mode \"\(modeText)\" for \(backend):\(model) (written by a newer Tiller?)")
        }
        let style = try styleText.map { t -> ContinuationStyle in
            guard let s = ContinuationStyle(rawValue: t) else {
                throw JudgeError.configuration("the judge cache stores an unknown continuation style \"\(t)\" for \(backend):\(model)")
            }
            return s
        }
        guard (mode == .digitTree) == (style != nil) else {
            throw JudgeError.configuration("the judge cache stores the mode \(mode.rawValue) for \(backend):\(model) with continuation \(styleText ?? "none")")
        }
        return JudgeScoring(mode: mode, continuation: style)
    }

    /// Stores a judge's mode unless one is stored already; returns the one that holds (a second
    /// process that detected concurrently adopts the first one's).
    @discardableResult
    public func storeScoring(_ scoring: JudgeScoring, backend: String, model: String) throws -> JudgeScoring {
        try writer.write { db in
            if let stored = try Self.storedScoring(db, backend: backend, model: model) { return stored }
            try db.execute(sql: "INSERT INTO judge_scoring (backend, model, mode, continuation, detected_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [backend, model, scoring.mode.rawValue, scoring.continuation?.rawValue,
                                       ISO8601DateFormatter().string(from: Date())])
            return scoring
        }
    }

    public func lookupPrefix(backend: String, model: String, prompt: String, prefix: String) throws -> [(token: String, logprob: Double)]? {
        try writer.read { db -> [(token: String, logprob: Double)]? in
            guard let json = try String.fetchOne(db, sql: "SELECT top_logprobs FROM judge_prefix_cache WHERE backend = ? AND model = ? AND prompt = ? AND prefix = ?",
                                                 arguments: [backend, model, prompt, prefix]) else { return nil }
            guard let rows = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[Any]] else {
                throw JudgeError.malformed("cached top_logprobs are not a JSON array of pairs")
            }
            return try rows.map { r in
                guard r.count == 2, let t = r[0] as? String, let l = (r[1] as? NSNumber)?.doubleValue else {
                    throw JudgeError.malformed("cached top_logprobs entry \(r)")
                }
                return (t, l)
            }
        }
    }

    public func storePrefix(_ top: [(token: String, logprob: Double)], backend: String, model: String, prompt: String, prefix: String) throws {
        // -inf is not JSON: a token with no probability is left out (it adds nothing).
        let rows = top.filter { $0.logprob.isFinite }.map { [$0.token, $0.logprob] as [Any] }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: rows), as: UTF8.self)
        try writer.write { db in
            try db.execute(sql: """
                INSERT OR REPLACE INTO judge_prefix_cache (backend, model, prompt, prefix, top_logprobs, created_at)
                VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [backend, model, prompt, prefix, json, ISO8601DateFormatter().string(from: Date())])
        }
    }

    /// The answer to `prompt` read as `reading` (a `JudgeReading.key`).
    public func lookup(backend: String, model: String, reading: String, prompt: String) throws -> JudgeAnswer? {
        try writer.read { db -> JudgeAnswer? in
            guard let row = try Row.fetchOne(db, sql: "SELECT distribution FROM judge_cache WHERE backend = ? AND model = ? AND reading = ? AND prompt = ?",
                                             arguments: [backend, model, reading, prompt]) else { return nil }
            let json: String = row["distribution"]
            return try JudgeAnswer(distribution: Self.decode(json))
        }
    }

    public func store(_ answer: JudgeAnswer, backend: String, model: String, reading: String, prompt: String) throws {
        let json = try Self.encode(answer.distribution)
        let now = ISO8601DateFormatter().string(from: Date())
        try writer.write { db in
            try db.execute(sql: """
                INSERT OR REPLACE INTO judge_cache (backend, model, reading, prompt, distribution, mass, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [backend, model, reading, prompt, json, answer.mass, now])
        }
    }

    public func count() throws -> Int {
        try writer.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM judge_cache") ?? 0 }
    }

    /// {"42": 0.31, ...} with keys sorted, so the stored text is stable.
    static func encode(_ d: [Int: Double]) throws -> String {
        let parts = d.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }
        return "{" + parts.joined(separator: ",") + "}"
    }
    static func decode(_ s: String) throws -> [Int: Double] {
        guard let obj = try JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] else {
            throw JudgeError.malformed("cached distribution is not a JSON object")
        }
        var d: [Int: Double] = [:]
        for (k, v) in obj {
            guard let i = Int(k), let p = (v as? NSNumber)?.doubleValue else { throw JudgeError.malformed("cached distribution entry \(k)") }
            d[i] = p
        }
        return d
    }
}
