// The real-model helpers (loadRealModel, SharedModels, smolFile, gemmaFile) live in TillerTestSupport.
@_exported import TillerTestSupport
