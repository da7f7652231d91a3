import Foundation
import TillerFormats
import TillerTensor

// llama.cpp's control-vector format: a GGUF whose tensors are `direction.N`, 1-D F32 [n_embd].
// Layer numbering, read from llama.cpp's source (common/common.cpp
// `common_control_vector_load_one`, src/llama-adapter.cpp `llama_adapter_cvec::apply`):
// the loader stores `direction.N` at buffer offset n_embd·(N−1) and rejects N = 0; the adapter
// fills the tensor of block il from offset n_embd·(il−1) for il = 1…n_layer−1 and adds it to
// that block's output (`build_cvec` right before `l_out-il`). So `direction.N` is added to the
// output of 0-based block N, which is Tiller's `resid_post.N`: `layer.L` ↔ `direction.L`, and a
// vector for block 0 cannot be expressed (llama.cpp never steers block 0).
// Metadata follows repeng's exporter: general.architecture = "controlvector",
// controlvector.model_hint, controlvector.layer_count; Tiller's own keys are kept as tiller.*.
public enum ControlVectorGGUF {
    /// Writes `file` as a llama.cpp control vector, each direction scaled by `scale`.
    /// Returns the layers left out (layer 0, which llama.cpp cannot address).
    @discardableResult
    public static func export(_ file: SteeringVectorFile, to path: String, modelHint: String, scale: Float = 1) throws -> [Int] {
        let kept = file.layers.filter { $0 >= 1 }
        guard !kept.isEmpty else {
            throw VectorFileError("\(path): nothing to export: llama.cpp control vectors cannot steer block 0, and the file has no other layers")
        }
        var w = GGUFWriter()
        w.set("general.architecture", .string("controlvector"))
        w.set("controlvector.model_hint", .string(modelHint))
        w.set("controlvector.layer_count", .uint32(UInt32(kept.count)))
        for (k, v) in file.metadata.strings.sorted(by: { $0.key < $1.key }) { w.set("tiller." + k, .string(v)) }
        if scale != 1 { w.set("tiller.scale", .float32(scale)) }
        for l in kept { try w.addTensor(name: "direction.\(l)", floats: file.vectors[l]!.map { $0 * scale }, shape: [file.hidden]) }
        try w.write(to: path)
        return file.layers.filter { $0 < 1 }
    }

    /// Reads a llama.cpp control vector (from Tiller or any other exporter) as a vector file.
    public static func load(path: String) throws -> SteeringVectorFile {
        let g: GGUFFile
        do { g = try GGUFFile(path: path) } catch { throw VectorFileError("\(path): cannot read control vector: \(error)") }
        var vectors: [Int: [Float]] = [:]
        for info in g.tensorInfos {
            let parts = info.name.split(separator: ".")
            guard parts.count == 2, parts[0] == "direction", let n = Int(parts[1]) else {
                throw VectorFileError("\(path): tensor \(info.name) is not named direction.N (llama.cpp rejects such files)")
            }
            guard n >= 1 else { throw VectorFileError("\(path): tensor \(info.name): llama.cpp's layer indices start at 1") }
            guard info.type == .f32, info.ggmlDims.count == 1 else {
                throw VectorFileError("\(path): tensor \(info.name) must be 1-D F32 (llama.cpp's requirement), found \(info.type) \(info.shape)")
            }
            let t = try g.tensor(info.name)
            let v = (0..<t.elementCount).map { t.data.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
            // llama.cpp sums repeated directions for one layer.
            if let old = vectors[n] { vectors[n] = zip(old, v).map(+) } else { vectors[n] = v }
        }
        guard !vectors.isEmpty else { throw VectorFileError("\(path): no direction.N tensors") }
        guard Set(vectors.values.map(\.count)).count == 1 else {
            throw VectorFileError("\(path): direction tensors have different sizes")
        }
        var strings: [String: String] = [:]
        for (k, v) in g.metadata where k.hasPrefix("tiller.") && k != "tiller.scale" { if let s = v.string { strings[String(k.dropFirst(7))] = s } }
        var meta = try VectorMetadata(strings: strings, path: path)
        if strings.isEmpty, let hint = g.metadata["controlvector.model_hint"]?.string { meta.extra["model_hint"] = hint }
        if let s = g.metadata["tiller.scale"]?.double, s != 0, s != 1 {
            for k in vectors.keys { vectors[k] = vectors[k]!.map { $0 / Float(s) } }
        }
        var f = SteeringVectorFile(vectors: vectors, metadata: meta)
        f.path = path
        return f
    }
}
