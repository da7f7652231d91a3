// Usage: TokenizerBench TEXT_FILE MODEL.gguf [EXPECTED_IDS.json] ...
// For each model: load time, then encode time of the whole text (cold: empty word cache; warm: again),
// tokens per second, and whether the ids equal the expected ids written by run.sh from transformers.
import Foundation
import TillerFormats
import TillerTokenizers

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

let args = CommandLine.arguments
guard args.count >= 3 else {
    print("usage: TokenizerBench TEXT_FILE MODEL.gguf [EXPECTED_IDS.json] [MODEL.gguf [EXPECTED_IDS.json]] ...")
    exit(2)
}
let text = try String(contentsOfFile: args[1], encoding: .utf8)
print(String(format: "text: %@ (%.2f MB, %d characters)", args[1], Double(text.utf8.count) / 1e6, text.count))
var i = 2
while i < args.count {
    let modelPath = args[i]
    var expected: [Int]? = nil
    if i + 1 < args.count, args[i + 1].hasSuffix(".json") {
        expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: args[i + 1]))) as? [Int]
        i += 1
    }
    i += 1
    var tokenizer: Tokenizer! = nil
    let load = try seconds { tokenizer = try loadTokenizer(gguf: GGUFFile(path: modelPath)) }
    var ids: [Int] = []
    let cold = seconds { ids = tokenizer.encode(text, addSpecialTokens: true) }
    let warm = seconds { ids = tokenizer.encode(text, addSpecialTokens: true) }
    let name = URL(fileURLWithPath: modelPath).lastPathComponent
    print(String(format: "tiller %@: load %.2f s, encode %.3f s cold / %.3f s warm, %d tokens (%.1fM tokens/s warm)",
                 name, load, cold, warm, ids.count, Double(ids.count) / warm / 1e6))
    if let expected {
        if ids == expected {
            print("  ids equal transformers' (\(expected.count) tokens)")
        } else {
            let firstDiff = zip(ids, expected).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset ?? min(ids.count, expected.count)
            print("  ids DIFFER from transformers': \(ids.count) vs \(expected.count) tokens, first difference at \(firstDiff)")
        }
    }
}
