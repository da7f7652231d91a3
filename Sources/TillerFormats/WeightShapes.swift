import TillerTensor

extension ModelConfig {
    /// The shape (PyTorch order) a transformers parameter must have under this configuration
    /// (TensorName's table names it, ModelTensor.shape sizes it); nil for names it does not constrain.
    public func expectedShape(of name: String) -> [Int]? {
        TensorName.parse(transformers: name, architecture: architecture)?.tensor.shape(self)
    }

    /// Why a tensor of this name and shape cannot belong to this model, or nil if it can.
    public func shapeProblem(of name: String, shape: [Int]) -> String? {
        let prefix = "model.layers."
        if name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            if let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]), layer >= numHiddenLayers {
                return "layer \(layer) does not exist in a model of \(numHiddenLayers) layers"
            }
        }
        guard let want = expectedShape(of: name), want != shape else { return nil }
        return "shape \(shape) does not match the configuration, which implies \(want)"
    }
}
