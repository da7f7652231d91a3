import CTillerKernels
import Foundation

/// The kernels that multiply by a weight matrix on the CPU (y = x·Wᵀ).
public enum CPUKernel: String, Sendable, CaseIterable {
    /// The fp32 copy packed in 16-output slabs, AVX-512 (`PackedMatrix`).
    case packedCopy = "packed fp32 copy"
    /// The VNNI slabs' one-row kernel, run once per input row (`VNNIMatrix`).
    case vnniOneRow = "vnni one-row"
    /// The VNNI slabs' four-rows-a-pass kernel.
    case vnniRows = "vnni rows"
    /// sgemm over panels of the row-major fp32 copy.
    case fp32CopySgemm = "sgemm on fp32 copy"
    /// The stored blocks dequantized panel by panel into slabs for the packed kernel (AVX-512).
    case dequantizedPanelsPacked = "dequantized panels, packed kernel"
    /// The stored blocks (dequantized panel by panel unless F32) through sgemm.
    case panelsSgemm = "panels, sgemm"
    /// The fused dequantize-and-dot one-row kernel on the stored blocks, once per input row.
    case fusedOneRow = "fused one-row"
    /// Each stored weight row dequantized once and shared by all input rows.
    case fusedRows = "fused rows"
}

/// What the CPU offers the kernels: the AVX-512 kernels (packed GEMM; off with
/// `TILLER_KERNELS=portable` or `TILLER_PACKED=0`) and VNNI (off with `TILLER_VNNI=0`).
public struct CPUFeatures: Sendable, Equatable, CustomStringConvertible {
    public var packed: Bool
    public var vnni: Bool
    public init(packed: Bool, vnni: Bool) {
        self.packed = packed
        self.vnni = vnni
    }
    public static var current: CPUFeatures { CPUFeatures(packed: PackedMatrix.available, vnni: VNNIMatrix.available) }
    public var description: String { "packed \(packed ? "on" : "off"), vnni \(vnni ? "on" : "off")" }
}

/// The copies a CPU matrix keeps beside the file's blocks.
public struct CPUCopies: Sendable, Equatable, CustomStringConvertible {
    /// An fp32 copy in packed slabs (`PackedMatrix`).
    public var packed: Bool
    /// A row-major fp32 copy (for sgemm).
    public var fp32: Bool
    /// VNNI decode slabs (`VNNIMatrix`).
    public var vnni: Bool
    public init(packed: Bool = false, fp32: Bool = false, vnni: Bool = false) {
        self.packed = packed
        self.fp32 = fp32
        self.vnni = vnni
    }
    public static let none = CPUCopies()
    public var description: String {
        let names = [packed ? "packed" : nil, fp32 ? "fp32" : nil, vnni ? "vnni" : nil].compactMap { $0 }
        return names.isEmpty ? "blocks only" : "blocks + " + names.joined(separator: " + ")
    }
}

/// The one place the CPU backend decides how to multiply by a weight matrix: which copies to make
/// at load (`copies`) and, per product, which kernel runs (`kernel`). Both are pure functions of
/// the stored type, the row count, the copies and the CPU's features; `WeightMatrix`, `VNNIMatrix`
/// and the CPU backend only run what they are told.
public enum CPUKernelChoice {
    /// Input rows from which products leave the few-row kernels for GEMM (packed, sgemm, panels).
    /// sgemm on an fp32 copy is 3.4× panel dequantization on batch-16 decode of SmolLM2; the
    /// packed kernel 302 vs 209 tok/s on 32×64 steered generation (sgemm re-packs the whole
    /// matrix on every call).
    public static let gemmMinRows = 8
    /// Up to this many rows a one-row kernel (fused or VNNI) runs once per row: its eight
    /// accumulator chains beat the multi-row kernels' padding.
    public static let oneRowKernelMaxRows = 3
    /// Input rows up to which the VNNI slabs beat dequantizing panels for the fp32 kernels, on a
    /// matrix without an fp32 copy (batched decode of a model over the fp32-copy limit): the digits
    /// cost as many instructions per product as fp32 FMAs, and the weights stay bytes.
    public static let vnniMaxRows = 64

    /// Whether the stored type has a fused one-row kernel (all but F16/BF16/F32 rows whose length
    /// is not a multiple of 32 do).
    public static func hasFusedKernel(type: GGMLType, inFeatures: Int) -> Bool {
        type.blockSize > 1 || inFeatures % 32 == 0
    }

    /// Whether VNNI slabs exist for this stored type and row length (Q4_1, Q8_0, Q5_0, Q4_0;
    /// Q4_K with rows a multiple of 256).
    public static func hasVNNILayout(type: GGMLType, inFeatures: Int) -> Bool {
        VNNIMatrix.layout(of: type) != nil && tiller_vnni_slab_bytes(Int32(type.rawValue), Int32(inFeatures)) > 0
    }

    /// The copies made at load. `fitsFP32Limit`: the whole model's fp32 size is within the
    /// backend's copy limit. Batch-1 decode reads VNNI slabs where the CPU has VNNI; where the fp32
    /// copy fits it is packed on AVX-512 CPUs (every many-row product runs through it) and
    /// row-major elsewhere (for sgemm; not for F32 files, whose blocks are that copy already).
    public static func copies(type: GGMLType, inFeatures: Int, fitsFP32Limit: Bool, features: CPUFeatures) -> CPUCopies {
        let vnni = features.vnni && hasVNNILayout(type: type, inFeatures: inFeatures)
        if fitsFP32Limit && features.packed { return CPUCopies(packed: true, vnni: vnni) }
        return CPUCopies(fp32: fitsFP32Limit && type != .f32, vnni: vnni)
    }

    /// The kernel for one product of `rows` input rows. `rowInvariant`: every row's outputs must
    /// not depend on how many rows the product has, so the packed kernel (one fp32 accumulator per
    /// output, summed over the inputs in order, whatever the tile) runs at every row count where
    /// there is a packed copy; the few-row kernels sum in other orders. Teacher-forced scoring asks
    /// for it (TeacherForcing.swift), whose steps batch the same rows differently by reuse.
    public static func kernel(type: GGMLType, inFeatures: Int, rows: Int, copies: CPUCopies, features: CPUFeatures,
                              rowInvariant: Bool = false) -> CPUKernel {
        if copies.packed && features.packed && (rows >= gemmMinRows || rowInvariant) { return .packedCopy }
        // The VNNI slabs: one-row sizes always; without an fp32 copy up to vnniMaxRows rows,
        // instead of dequantizing every panel on every decode step.
        if copies.vnni && features.vnni
            && (rows <= oneRowKernelMaxRows || (!copies.packed && !copies.fp32 && rows <= vnniMaxRows)) {
            return rows <= oneRowKernelMaxRows ? .vnniOneRow : .vnniRows
        }
        if copies.fp32 && rows >= gemmMinRows { return .fp32CopySgemm }
        if rows >= gemmMinRows { return type != .f32 && features.packed ? .dequantizedPanelsPacked : .panelsSgemm }
        if rows <= oneRowKernelMaxRows && hasFusedKernel(type: type, inFeatures: inFeatures) { return .fusedOneRow }
        return .fusedRows
    }
}
