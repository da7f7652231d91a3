import CVulkan
import Foundation

/// Device time per shader variant, for TILLER_VULKAN_PROFILE=1: each step brackets every dispatch
/// and copy with timestamp queries and adds the differences here after it has run; the table is
/// printed to stderr when the process exits. Host time is counted too: recording (from a step's
/// start to its submit) and waiting (submit to fence), so that per-step overheads show beside the
/// kernels. Intervals overlap where the device runs independent dispatches together, so on a GPU the
/// per-shader sums are an upper bound of each one's share.
final class VulkanProfile: @unchecked Sendable {
    static let shared = VulkanProfile()

    private struct Entry { var count = 0; var nanoseconds = 0.0 }
    private var entries: [String: Entry] = [:]
    private var steps = 0, barriers = 0
    private var recordSeconds = 0.0, submitSeconds = 0.0
    /// Pipeline creation (the driver compiling each variant), by variant and constants.
    private var compiles: [String: Double] = [:]
    private let lock = NSLock()
    private var registered = false

    func add(_ name: String, nanoseconds: Double) {
        lock.lock()
        defer { lock.unlock() }
        entries[name, default: Entry()].count += 1
        entries[name, default: Entry()].nanoseconds += nanoseconds
    }

    func compiled(_ key: String, seconds: Double) {
        lock.lock()
        defer { lock.unlock() }
        compiles[key, default: 0] += seconds
    }

    func step(barriers b: Int, record: Double, submit: Double) {
        lock.lock()
        defer { lock.unlock() }
        if !registered {
            registered = true
            atexit { VulkanProfile.shared.print() }
        }
        steps += 1
        barriers += b
        recordSeconds += record
        submitSeconds += submit
    }

    /// The table: per shader variant its calls, total device milliseconds, mean microseconds and
    /// share of the device total, slowest first; then the host's side.
    func report() -> String {
        lock.lock()
        defer { lock.unlock() }
        let total = entries.values.reduce(0) { $0 + $1.nanoseconds }
        var lines = ["Vulkan profile (TILLER_VULKAN_PROFILE): device time per shader variant"]
        lines.append("  shader                  calls    total ms     mean µs   share")
        for (name, e) in entries.sorted(by: { $0.value.nanoseconds > $1.value.nanoseconds }) {
            lines.append("  " + name.padding(toLength: max(20, name.count), withPad: " ", startingAt: 0) + String(format: " %8d %11.1f %11.1f %6.1f%%", e.count, e.nanoseconds / 1e6,
                                e.nanoseconds / 1e3 / Double(max(e.count, 1)), total > 0 ? 100 * e.nanoseconds / total : 0))
        }
        lines.append(String(format: "  device total %.1f ms; %d steps, %d barriers; host: recording %.1f ms, submit to fence %.1f ms",
                            total / 1e6, steps, barriers, recordSeconds * 1e3, submitSeconds * 1e3))
        let compileTotal = compiles.values.reduce(0, +)
        lines.append(String(format: "  pipeline creation %.1f ms for %d variants", compileTotal * 1e3, compiles.count) + ": "
                     + compiles.sorted { $0.value > $1.value }.map { String(format: "%@ %.0f ms", $0.key, $0.value * 1e3) }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }

    func print() { FileHandle.standardError.write((report() + "\n").data(using: .utf8)!) }
}

/// The timestamp queries of one step: two per bracketed command, in pools of `perPool` pairs.
final class StepTimestamps {
    static let perPool = 512
    private let device: VulkanDevice
    private var pools: [VkQueryPool] = []
    private var names: [String] = []

    init(device: VulkanDevice) { self.device = device }

    deinit { for p in pools { tiller_vk.vkDestroyQueryPool(device.device, p, nil) } }

    /// Records `body` (one command) between two timestamps named `name`.
    func bracket(_ cmd: VkCommandBuffer, _ name: String, _ body: () -> Void) throws {
        let i = names.count % Self.perPool
        if i == 0 {
            var info = VkQueryPoolCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO
            info.queryType = VK_QUERY_TYPE_TIMESTAMP
            info.queryCount = UInt32(2 * Self.perPool)
            var pool: VkQueryPool?
            try check(tiller_vk.vkCreateQueryPool(device.device, &info, nil, &pool), "vkCreateQueryPool")
            pools.append(pool!)
            tiller_vk.vkCmdResetQueryPool(cmd, pool, 0, UInt32(2 * Self.perPool))
        }
        let pool = pools.last!
        tiller_vk.vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, pool, UInt32(2 * i))
        body()
        tiller_vk.vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, pool, UInt32(2 * i + 1))
        names.append(name)
    }

    /// After the step has run: adds each command's device time to the profile.
    func collect() throws {
        for (p, pool) in pools.enumerated() {
            let n = min(Self.perPool, names.count - p * Self.perPool)
            var ticks = [UInt64](repeating: 0, count: 2 * n)
            try check(tiller_vk.vkGetQueryPoolResults(device.device, pool, 0, UInt32(2 * n), ticks.count * 8, &ticks, 8,
                                                      VK_QUERY_RESULT_64_BIT.rawValue | VK_QUERY_RESULT_WAIT_BIT.rawValue),
                      "vkGetQueryPoolResults")
            for i in 0..<n {
                let dt = ticks[2 * i + 1] >= ticks[2 * i] ? Double(ticks[2 * i + 1] - ticks[2 * i]) : 0
                VulkanProfile.shared.add(names[p * Self.perPool + i], nanoseconds: dt * device.timestampPeriod)
            }
        }
    }
}
