import Foundation

/// Texts for a scan or any prompt list: one text per line, or JSONL whose objects have a `text`
/// field (so texts may contain newlines). Blank lines are ignored.
public enum PromptFile {
    public static func load(path: String) throws -> [String] {
        let raw: String
        do { raw = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ScanError("\(path): cannot read prompt file: \(error.localizedDescription)")
        }
        return try parse(raw, path: path)
    }

    public static func parse(_ raw: String, path: String) throws -> [String] {
        var texts: [String] = []
        for (i, line) in raw.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            if trimmed.hasPrefix("{") {
                guard let obj = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                    throw ScanError("\(path):\(i + 1): line starts with '{' but is not a JSON object")
                }
                guard let t = obj["text"] as? String else {
                    throw ScanError("\(path):\(i + 1): JSON object has no string field \"text\"")
                }
                texts.append(t)
            } else {
                texts.append(String(line))
            }
        }
        guard !texts.isEmpty else { throw ScanError("\(path): no texts found") }
        return texts
    }

    /// The neutral texts shipped with Tiller (40 encyclopedia-style paragraphs with no trait
    /// content): the `perplexity` evaluator's text set.
    public static func shippedNeutral() throws -> [String] {
        guard let url = Bundle.module.url(forResource: "neutral", withExtension: "jsonl", subdirectory: "Resources")
                ?? Bundle.module.url(forResource: "neutral", withExtension: "jsonl") else {
            throw ScanError("the shipped neutral text set (neutral.jsonl) is missing from the TillerSteering bundle")
        }
        return try load(path: url.path)
    }

    /// The calibration set shipped with Tiller (61 varied texts: prose, dialogue, code, lists,
    /// numbers, other languages).
    public static func shippedCalibration() throws -> [String] {
        guard let url = Bundle.module.url(forResource: "calibration", withExtension: "jsonl", subdirectory: "Resources")
                ?? Bundle.module.url(forResource: "calibration", withExtension: "jsonl") else {
            throw ScanError("the shipped calibration set (calibration.jsonl) is missing from the TillerSteering bundle")
        }
        return try load(path: url.path)
    }
}
