import Foundation
import Testing

@Suite("budgetctl as a process")
struct ValidateCommandTests {
    @Test("validate accepts the fixture silently with exit 0")
    func validFixture() throws {
        let result = try runBudgetctl(["validate", try fixturePath()], environment: fixtureEnvironment)
        #expect(result.status == 0)
        #expect(result.stdout == "")
        #expect(result.stderr == "")
    }
}
