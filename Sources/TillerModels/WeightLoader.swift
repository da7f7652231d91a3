import Foundation
import TillerFormats
import TillerTensor

// MARK: - Weight loading with named errors

/// Reads a model's tensors by what they are (`ModelTensor`), under the names and shapes the one
/// tensor table (TensorName, ModelTensor.shape) gives them, and uploads them to the backend.
struct WeightLoader {
    let source: WeightSource
    let model: String
    let backend: Backend
    let config: ModelConfig
    let modelBytesFP32: Int

    /// The tensor's transformers name in this model.
    func name(_ t: ModelTensor, layer: Int? = nil) -> String {
        TensorName.transformers(t, layer: layer, architecture: config.architecture)
    }

    func raw(_ t: ModelTensor, layer: Int? = nil, shape: [Int]? = nil) throws -> RawTensor {
        let (n, s) = (name(t, layer: layer), shape ?? t.shape(config))
        guard let raw = try source.tensor(n) else {
            throw ModelError("\(model): missing tensor \(n) (expected shape \(s))")
        }
        try check(n, raw, s)
        return raw
    }

    func check(_ name: String, _ t: RawTensor, _ shape: [Int]) throws {
        guard t.shape == shape else {
            throw ModelError("\(model): tensor \(name) has shape \(t.shape), expected \(shape)")
        }
    }

    func matrix(_ t: ModelTensor, layer: Int? = nil) throws -> MatrixOperator {
        try backendMatrix(raw(t, layer: layer))
    }

    /// The backend's operator for a tensor; its errors (an unsupported type) name the model file.
    private func backendMatrix(_ t: RawTensor) throws -> MatrixOperator {
        do { return try backend.matrix(t, modelBytesFP32: modelBytesFP32) } catch let e as UnsupportedTypeError {
            throw ModelError("\(model): \(e)")
        }
    }

    func optionalMatrix(_ t: ModelTensor, layer: Int? = nil) throws -> MatrixOperator? {
        let n = name(t, layer: layer)
        guard let raw = try source.tensor(n) else { return nil }
        try check(n, raw, t.shape(config))
        return try backendMatrix(raw)
    }

    /// A fused tensor of `rows.reduce(0, +)` rows as one matrix per block of rows, each a view of
    /// the stored bytes (quant blocks never straddle rows).
    func rowBlocks(_ t: ModelTensor, layer: Int, rows: [Int]) throws -> [MatrixOperator] {
        let whole = try raw(t, layer: layer)
        let (n, columns) = (name(t, layer: layer), whole.shape[1])
        let rowBytes = whole.data.count / whole.shape[0]
        var start = 0
        return try rows.map { count in
            defer { start += count }
            let bytes = UnsafeRawBufferPointer(rebasing: whole.data[(start * rowBytes)..<((start + count) * rowBytes)])
            let part = RawTensor(name: "\(n)[rows \(start)..<\(start + count)]", type: whole.type, shape: [count, columns],
                                 data: bytes, owner: whole.owner)
            return try backendMatrix(part)
        }
    }

    /// A 1-D tensor (a bias) as fp32 on the backend.
    func vector(_ t: ModelTensor, layer: Int? = nil) throws -> BackendBuffer {
        try backend.upload(floats(raw(t, layer: layer)))
    }

    func optionalVector(_ t: ModelTensor, layer: Int? = nil) throws -> BackendBuffer? {
        let n = name(t, layer: layer)
        guard let raw = try source.tensor(n) else { return nil }
        try check(n, raw, t.shape(config))
        return try backend.upload(floats(raw))
    }

    /// A norm weight as the multiplier the block applies (w, or 1 + w in fp32 for Gemma), on the backend.
    func norm(_ t: ModelTensor, layer: Int? = nil) throws -> BackendBuffer {
        let w = try floats(raw(t, layer: layer))
        return try backend.upload(config.architecture.facts.normAddsOne ? w.map { 1 + $0 } : w)
    }

    private func floats(_ t: RawTensor) throws -> [Float] {
        do { return try dequantize(t) } catch {
            throw ModelError("\(model): tensor \(t.name): \(error)")
        }
    }
}
