// The async/sync bridge (`blocking`, AsyncBridge) lives in TillerAsync, shared with the server;
// re-exported so that TillerEval's users (the CLI commands, the experiment pipeline) reach it.
@_exported import TillerAsync
