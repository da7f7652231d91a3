import COpenBLAS
import Foundation
import TillerTensor

// Usage: KernelBench [seconds-per-case]
// Prints GB/s of weight bytes for the one-row (decode) kernels and GFLOP/s for the panel GEMM.

let budget = Double(CommandLine.arguments.dropFirst().first ?? "") ?? 0.5
let pool = WorkerPool.shared
print("threads: \(pool.threadCount)")

func randomMatrix(_ type: GGMLType, out: Int, inF: Int) -> RawTensor {
    let bytes = type.byteCount(elements: out * inF)!
    let owned = OwnedBytes(count: bytes)
    var state: UInt64 = 0x1234_5678
    for i in 0..<bytes {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        owned.pointer.storeBytes(of: UInt8(truncatingIfNeeded: state >> 56), toByteOffset: i, as: UInt8.self)
    }
    // Sane f16 scales (0.01) wherever a block type keeps them, so no inf/nan slows the FPU.
    let fields: [GGMLType: [Int]] = [.q4_0: [0], .q4_1: [0, 2], .q5_0: [0], .q5_1: [0, 2], .q8_0: [0],
                                     .q4_K: [0, 2], .q5_K: [0, 2], .q6_K: [208]]
    if let offsets = fields[type] {
        for b in 0..<(bytes / type.blockBytes) {
            for f in offsets {
                owned.pointer.storeBytes(of: Float16(0.01).bitPattern, toByteOffset: b * type.blockBytes + f, as: UInt16.self)
            }
        }
    } else if type == .f32 {
        for i in 0..<(out * inF) { owned.pointer.storeBytes(of: Float(i % 7) * 0.01, toByteOffset: i * 4, as: Float.self) }
    } else if type == .f16 || type == .bf16 {
        for i in 0..<(out * inF) { owned.pointer.storeBytes(of: UInt16(0x3C00), toByteOffset: i * 2, as: UInt16.self) }
    }
    return RawTensor(name: "bench", type: type, shape: [out, inF], data: owned.buffer, owner: owned)
}

// With one thread the clock is the thread's CPU time, so that a busy machine (other processes
// taking turns on the cores) does not count; with more it is wall time.
let useCPUTime = pool.threadCount == 1
print(useCPUTime ? "clock: thread CPU time" : "clock: wall time")

func now() -> Double {
    var ts = timespec()
    clock_gettime(useCPUTime ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Median seconds per call of `body`, over repetitions filling `budget` seconds.
func time(_ body: () -> Void) -> Double {
    body()
    var samples: [Double] = []
    let start = now()
    repeat {
        let t0 = now()
        body()
        samples.append(now() - t0)
    } while now() - start < budget && samples.count < 100_000
    samples.sort()
    return samples[samples.count / 2]
}

print("\n# decode matvec (rows = 1), median")
for (out, inF) in [(1536, 576), (576, 1536), (49152, 576), (2048, 640), (262144, 640)] {
    for type in [GGMLType.q4_1, .q8_0, .q5_0, .q4_K, .q6_K, .bf16, .f16, .f32] {
        if inF % type.blockSize != 0 { continue }
        if out == 262144 && type != .q8_0 { continue }
        let w = try! WeightMatrix(randomMatrix(type, out: out, inF: inF))
        let x = [Float](repeating: 0.5, count: inF)
        var y = [Float](repeating: 0, count: out)
        let s = x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in time { w.apply(xp.baseAddress!, rows: 1, into: yp.baseAddress!) } }
        }
        print(String(format: "%6d×%-5d %-5@ %8.1f µs  %6.1f GB/s  %6.2f Gweights/s",
                     out, inF, type.description, s * 1e6, Double(w.byteCount) / s / 1e9, Double(out * inF) / s / 1e9))
    }
}

print("\n# few rows (dequantize row + shared dot), 1536×576")
for rows in [2, 3, 4, 7] {
    for type in [GGMLType.q4_1, .q8_0] {
        let w = try! WeightMatrix(randomMatrix(type, out: 1536, inF: 576))
        let x = [Float](repeating: 0.5, count: rows * 576)
        var y = [Float](repeating: 0, count: rows * 1536)
        let s = x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in time { w.apply(xp.baseAddress!, rows: rows, into: yp.baseAddress!) } }
        }
        print(String(format: "rows %d %-5@ %8.1f µs  %6.1f GFLOP/s", rows, type.description, s * 1e6, 2.0 * Double(rows * 1536 * 576) / s / 1e9))
    }
}

print("\n# GEMM: rows×in @ in×out")
for (rows, out, inF) in [(64, 1536, 576), (64, 576, 1536), (512, 1536, 576), (8, 1536, 576)] {
    for type in [GGMLType.q4_1, .q8_0, .q4_K, .f32] {
        if inF % type.blockSize != 0 { continue }
        let w = try! WeightMatrix(randomMatrix(type, out: out, inF: inF))
        let x = [Float](repeating: 0.5, count: rows * inF)
        var y = [Float](repeating: 0, count: rows * out)
        let s = x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in time { w.apply(xp.baseAddress!, rows: rows, into: yp.baseAddress!) } }
        }
        print(String(format: "%4d×%-5d @ %5d×%-5d %-5@ %9.1f µs  %6.1f GFLOP/s", rows, inF, inF, out, type.description,
                     s * 1e6, 2.0 * Double(rows * out * inF) / s / 1e9))
    }
}

print("\n# pool")
let sink = UnsafeMutablePointer<Int>.allocate(capacity: 64)
sink.initialize(repeating: 0, count: 64)
let t = time { pool.parallelFor(pool.threadCount * 2) { i in sink[i * 8 % 64] &+= 1 } }
print(String(format: "parallelFor(%d): %.2f µs", pool.threadCount * 2, t * 1e6))
