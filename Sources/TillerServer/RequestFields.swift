import Foundation
import TillerModels

/// A JSON request body as an object, with typed readers whose errors name the field: a number
/// is never a boolean, an integer has no fraction, and `null` reads as absent.
struct RequestFields {
    let object: [String: Any]

    init(_ body: Data) throws {
        guard !body.isEmpty else { throw ServerError.badRequest("the request body is empty; send a JSON object", param: nil) }
        let any: Any
        do { any = try JSONSerialization.jsonObject(with: body) } catch {
            throw ServerError.badRequest("the request body is not valid JSON", param: nil)
        }
        guard let obj = any as? [String: Any] else { throw ServerError.badRequest("the request body must be a JSON object", param: nil) }
        object = obj
    }

    init(object: [String: Any]) { self.object = object }

    subscript(_ key: String) -> Any? {
        guard let v = object[key], !(v is NSNull) else { return nil }
        return v
    }

    func number(_ key: String) throws -> Double? {
        guard let v = self[key] else { return nil }
        guard let n = v as? NSNumber, !isJSONBool(v), n.doubleValue.isFinite else {
            throw ServerError.badRequest("\(key) must be a number", param: key)
        }
        return n.doubleValue
    }

    func integer(_ key: String) throws -> Int? {
        guard let d = try number(key) else { return nil }
        guard d == d.rounded(), abs(d) < 1e15 else { throw ServerError.badRequest("\(key) must be an integer", param: key) }
        return Int(d)
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = self[key] else { return nil }
        guard isJSONBool(v), let b = v as? Bool else { throw ServerError.badRequest("\(key) must be a boolean", param: key) }
        return b
    }

    func string(_ key: String) throws -> String? {
        guard let v = self[key] else { return nil }
        guard let s = v as? String else { throw ServerError.badRequest("\(key) must be a string", param: key) }
        return s
    }
}

/// JSON true/false as JSONSerialization returns them (`is Bool` also matches the numbers 0 and 1).
func isJSONBool(_ v: Any) -> Bool {
    guard let n = v as? NSNumber else { return false }
    return String(cString: n.objCType) == "c"
}
