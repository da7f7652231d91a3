import Foundation
import XCTest
@testable import TillerTokenizers

/// The Jinja interpreter against jinja2 (set up as transformers sets it up for chat templates).
final class JinjaTests: XCTestCase {
    /// Fixture JSON re-read with object key order kept, as the templates see it.
    private func orderedFixture(_ name: String) throws -> JValue {
        try parseJSONValue(String(contentsOf: Fixtures.url(name), encoding: .utf8))
    }

    private func dictValues(_ v: JValue) -> [String: JValue] {
        guard case .dict(let d) = v else { return [:] }
        return Dictionary(uniqueKeysWithValues: d.pairs)
    }

    func testJinjaCasesMatchJinja2() throws {
        guard case .list(let cases) = try orderedFixture("jinja-cases.json") else { return XCTFail("bad fixture") }
        XCTAssertGreaterThan(cases.count, 40)
        for c in cases {
            let d = dictValues(c)
            let name = d["name"]!.str
            let source = d["template"]!.str
            let context = dictValues(d["context"]!)
            do {
                let out = try JinjaTemplate(source).render(values: context)
                if let error = d["error"] {
                    XCTFail("\(name): expected error \(error.str), got \(out.debugDescription)")
                } else {
                    XCTAssertEqual(out, d["output"]!.str, name)
                }
            } catch {
                if let expected = d["error"] { XCTAssertEqual(String(describing: error), expected.str, name) }
                else { XCTFail("\(name): \(error)") }
            }
        }
    }

    func testRealChatTemplatesMatchJinja2() throws {
        let fixture = dictValues(try orderedFixture("chat-templates.json"))
        XCTAssertEqual(Set(fixture.keys), ["gemma2", "gemma3", "llama3.1", "chatml"])
        for (name, entry) in fixture {
            let e = dictValues(entry)
            let template = try JinjaTemplate(e["template"]!.str)
            guard case .list(let renders) = e["renders"]! else { return XCTFail("bad fixture") }
            for r in renders {
                let rd = dictValues(r)
                let context: [String: JValue] = ["messages": rd["messages"]!, "add_generation_prompt": rd["add_generation_prompt"]!,
                                                 "bos_token": e["bos_token"]!, "eos_token": e["eos_token"]!,
                                                 "tools": .none, "documents": .none]
                do {
                    let out = try template.render(values: context)
                    if let error = rd["error"] { XCTFail("\(name): expected error \(error.str)") }
                    else { XCTAssertEqual(out, rd["rendered"]!.str, "\(name) \(rd["messages"]!.repr)") }
                } catch {
                    if let expected = rd["error"] { XCTAssertEqual(String(describing: error), expected.str, name) }
                    else { XCTFail("\(name): \(error)") }
                }
            }
            if let tool = e["tool_render"] {
                let td = dictValues(tool)
                let out = try template.render(values: ["messages": td["messages"]!, "tools": td["tools"]!,
                                                       "add_generation_prompt": td["add_generation_prompt"]!,
                                                       "bos_token": e["bos_token"]!, "eos_token": e["eos_token"]!,
                                                       "documents": .none])
                XCTAssertEqual(out, td["rendered"]!.str, "\(name) with tools")
            }
        }
    }

    func testStrftimeNowAndRaiseException() throws {
        let t = try JinjaTemplate("{{ strftime_now('%Y') }}")
        let year = Calendar.current.component(.year, from: Date())
        XCTAssertEqual(try t.render([:]), String(year))
        XCTAssertThrowsError(try JinjaTemplate("{{ raise_exception('no system role') }}").render([:])) {
            XCTAssertEqual(String(describing: $0), "no system role")
        }
    }

    func testSyntaxErrorsAreReported() {
        XCTAssertThrowsError(try JinjaTemplate("{% if x %}unclosed"))
        XCTAssertThrowsError(try JinjaTemplate("{{ 'unterminated }}"))
        XCTAssertThrowsError(try JinjaTemplate("{% frobnicate %}"))
        XCTAssertThrowsError(try JinjaTemplate("{{ x | nosuchfilter }}").render(["x": 1]))
    }
}
