import Foundation
import TillerFormats
import TillerModels
import TillerTokenizers
import XCTest
@_exported import TillerTestSupport

enum Fixtures {
    static var directory: String { Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.path }
    static func path(_ name: String) -> String { directory + "/" + name }
}
