import Foundation
import TillerFormats
import TillerTensor

// MARK: - Weight loading with named errors

struct WeightLoader {
    let source: WeightSource
    let model: String
    let backend: Backend
    let norm: NormStyle
    let modelBytesFP32: Int

    func raw(_ name: String, _ shape: [Int]) throws -> RawTensor {
        guard let t = try source.tensor(name) else {
            throw ModelError("\(model): missing tensor \(name) (expected shape \(shape))")
        }
        try check(name, t, shape)
        return t
    }

    func check(_ name: String, _ t: RawTensor, _ shape: [Int]) throws {
        guard t.shape == shape else {
            throw ModelError("\(model): tensor \(name) has shape \(t.shape), expected \(shape)")
        }
    }

    func matrix(_ name: String, _ shape: [Int]) throws -> MatrixOperator {
        try backendMatrix(raw(name, shape))
    }

    /// The backend's operator for a tensor; its errors (an unsupported type) name the model file.
    private func backendMatrix(_ t: RawTensor) throws -> MatrixOperator {
        do { return try backend.matrix(t, modelBytesFP32: modelBytesFP32) } catch let e as UnsupportedTypeError {
            throw ModelError("\(model): \(e)")
        }
    }

    func optionalMatrix(_ name: String, _ shape: [Int]) throws -> MatrixOperator? {
        guard let t = try source.tensor(name) else { return nil }
        try check(name, t, shape)
        return try backendMatrix(t)
    }

    /// A fused tensor of `rows.reduce(0, +)` × `columns` as one matrix per block of rows, each a
    /// view of the stored bytes (quant blocks never straddle rows).
    func rowBlocks(_ name: String, rows: [Int], columns: Int) throws -> [MatrixOperator] {
        let t = try raw(name, [rows.reduce(0, +), columns])
        let rowBytes = t.data.count / t.shape[0]
        var start = 0
        return try rows.map { n in
            defer { start += n }
            let bytes = UnsafeRawBufferPointer(rebasing: t.data[(start * rowBytes)..<((start + n) * rowBytes)])
            let part = RawTensor(name: "\(name)[rows \(start)..<\(start + n)]", type: t.type, shape: [n, columns],
                                 data: bytes, owner: t.owner)
            return try backend.matrix(part, modelBytesFP32: modelBytesFP32)
        }
    }

    /// A 1-D tensor (a bias) as fp32 on the backend.
    func vector(_ name: String, _ n: Int) throws -> BackendBuffer {
        try backend.upload(floats(raw(name, [n])))
    }

    func optionalVector(_ name: String, _ n: Int) throws -> BackendBuffer? {
        guard let t = try source.tensor(name) else { return nil }
        try check(name, t, [n])
        return try backend.upload(floats(t))
    }

    /// A norm weight as the multiplier the block applies (w, or 1 + w in fp32 for Gemma), on the backend.
    func norm(_ name: String, _ n: Int) throws -> BackendBuffer {
        let w = try floats(raw(name, [n]))
        switch norm {
        case .weight: return try backend.upload(w)
        case .onePlusWeight: return try backend.upload(w.map { 1 + $0 })
        }
    }

    private func floats(_ t: RawTensor) throws -> [Float] {
        do { return try dequantize(t) } catch {
            throw ModelError("\(model): tensor \(t.name): \(error)")
        }
    }
}
