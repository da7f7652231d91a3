import Foundation
import GRDB

/// Judge answers keyed by (backend, model, prompt) in a SQLite database (the results database
/// of a sweep, or a file of its own), so re-runs and resumed sweeps do not ask twice.
/// Stored: the answer distribution over 0…100 and its mass; the score is recomputed on read, so
/// the minimum-mass setting can change without invalidating anything.
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
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS judge_cache (
                    backend TEXT NOT NULL,
                    model TEXT NOT NULL,
                    prompt TEXT NOT NULL,
                    distribution TEXT NOT NULL,
                    mass REAL NOT NULL,
                    created_at TEXT NOT NULL,
                    PRIMARY KEY (backend, model, prompt)
                )
                """)
        }
    }

    public func lookup(backend: String, model: String, prompt: String) throws -> JudgeAnswer? {
        try writer.read { db -> JudgeAnswer? in
            guard let row = try Row.fetchOne(db, sql: "SELECT distribution FROM judge_cache WHERE backend = ? AND model = ? AND prompt = ?",
                                             arguments: [backend, model, prompt]) else { return nil }
            let json: String = row["distribution"]
            return try JudgeAnswer(distribution: Self.decode(json))
        }
    }

    public func store(_ answer: JudgeAnswer, backend: String, model: String, prompt: String) throws {
        let json = try Self.encode(answer.distribution)
        let now = ISO8601DateFormatter().string(from: Date())
        try writer.write { db in
            try db.execute(sql: """
                INSERT OR REPLACE INTO judge_cache (backend, model, prompt, distribution, mass, created_at)
                VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [backend, model, prompt, json, answer.mass, now])
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
