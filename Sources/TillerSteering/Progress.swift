import Foundation

/// A one-line progress bar with rate and ETA on standard error (redrawn in place on a terminal,
/// printed every ~10% otherwise so CI logs stay short).
public final class ProgressBar: @unchecked Sendable {
    private let label: String
    private let total: Int
    private let unit: String
    private let start = Date()
    private var done = 0
    private var lastPrint = Date.distantPast
    private var lastTenth = -1
    private let tty = isatty(2) != 0
    private let enabled: Bool

    public init(_ label: String, total: Int, unit: String = "", enabled: Bool = true) {
        self.label = label
        self.total = max(total, 1)
        self.unit = unit
        self.enabled = enabled
    }

    public func advance(by n: Int = 1) {
        done += n
        guard enabled else { return }
        let now = Date()
        let tenth = done * 10 / total
        if tty ? (now.timeIntervalSince(lastPrint) > 0.1 || done >= total) : (tenth != lastTenth) {
            lastPrint = now
            lastTenth = tenth
            draw(now: now)
        }
    }

    public func finish() {
        guard enabled else { return }
        draw(now: Date())
        if tty { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    private func draw(now: Date) {
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let width = 24
        let filled = min(width, done * width / total)
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let line = String(format: "%@ [%@] %d/%d%@  %.1fs elapsed, ETA %@", label, bar, done, total,
                          unit.isEmpty ? "" : " " + unit, elapsed, ProgressBar.duration(eta))
        FileHandle.standardError.write(Data(((tty ? "\r\u{1B}[K" : "") + line + (tty ? "" : "\n")).utf8))
    }

    static func duration(_ s: Double) -> String {
        if s < 60 { return String(format: "%.0fs", s) }
        if s < 3600 { return String(format: "%dm%02ds", Int(s) / 60, Int(s) % 60) }
        return String(format: "%dh%02dm", Int(s) / 3600, Int(s) % 3600 / 60)
    }
}
