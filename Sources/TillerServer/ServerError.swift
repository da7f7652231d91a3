import Foundation
import NIOHTTP1

/// An API error, answered as OpenAI does: `{"error": {"message", "type", "param", "code"}}`.
enum ServerError: Error {
    case badRequest(String, param: String?)
    case unauthorized(String)
    case notFound(String)
    case methodNotAllowed(String)
    case modelNotFound(String)
    case conflict(String, param: String?)
    case overloaded
    /// The client went away (nobody reads this answer; it keeps logs honest).
    case cancelled
    case engine(String)

    var response: HTTPResponse {
        func body(_ status: HTTPResponseStatus, _ message: String, _ type: String, _ param: String?, _ code: String?,
                  headers: [(String, String)] = []) -> HTTPResponse {
            .json(status, Self.errorObject(message, type: type, param: param, code: code), headers: headers)
        }
        switch self {
        case .badRequest(let m, let p): return body(.badRequest, m, "invalid_request_error", p, nil)
        case .unauthorized(let m):
            return body(.unauthorized, m, "invalid_request_error", nil, "invalid_api_key", headers: [("WWW-Authenticate", "Bearer")])
        case .notFound(let m): return body(.notFound, m, "invalid_request_error", nil, "not_found")
        case .methodNotAllowed(let m): return body(.methodNotAllowed, m, "invalid_request_error", nil, "method_not_allowed")
        case .modelNotFound(let m): return body(.notFound, m, "invalid_request_error", "model", "model_not_found")
        case .conflict(let m, let p): return body(.conflict, m, "invalid_request_error", p, "conflict")
        case .overloaded: return body(.tooManyRequests, "the server's queue is full; retry later", "rate_limit_error", nil, "overloaded")
        case .cancelled: return body(.init(statusCode: 499, reasonPhrase: "Client Closed Request"), "the request was cancelled", "invalid_request_error", nil, "cancelled")
        case .engine(let m): return body(.internalServerError, m, "server_error", nil, nil)
        }
    }

    var message: String {
        switch self {
        case .badRequest(let m, _), .unauthorized(let m), .notFound(let m), .methodNotAllowed(let m), .modelNotFound(let m),
             .conflict(let m, _), .engine(let m): return m
        case .overloaded: return "the server's queue is full; retry later"
        case .cancelled: return "the request was cancelled"
        }
    }

    static func errorObject(_ message: String, type: String, param: String? = nil, code: String? = nil) -> [String: Any] {
        ["error": ["message": message, "type": type, "param": param as Any? ?? NSNull(), "code": code as Any? ?? NSNull()]]
    }

    /// An error JSON body as bytes (for responses written outside the router: limits, timeouts).
    static func errorBody(_ message: String, type: String = "invalid_request_error", code: String) -> Data {
        (try? JSONSerialization.data(withJSONObject: errorObject(message, type: type, code: code), options: [.sortedKeys])) ?? Data()
    }
}
