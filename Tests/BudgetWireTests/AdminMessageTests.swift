import BudgetConfig
import BudgetWire
import Testing

@Suite("JSON admin messages")
struct AdminMessageTests {
    private func decodeError(_ json: String) -> String? {
        do {
            _ = try WireJSON.decode(AdminRequest.self, from: Array(json.utf8))
            return nil
        } catch {
            #expect(error.code == .badRequest)
            return error.message
        }
    }

    @Test("an admin request reads back equal after encoding")
    func roundTrip() throws {
        let entity = Entity.consumer(Consumer(username: "alice", customID: nil))
        let request = AdminRequest(
            op: .apply, baseVersion: 4, changes: [AppliedChange(action: .create, entity: entity)])
        #expect(try WireJSON.decode(AdminRequest.self, from: WireJSON.encode(request)) == request)
    }

    @Test("an unknown operation is refused naming the op member")
    func unknownOperation() {
        let message = decodeError(#"{"op":"explode"}"#)
        #expect(message?.contains("op") == true)
        #expect(message?.contains("explode") == true)
    }

    @Test("a bad change is refused naming its path inside changes")
    func badChangePath() {
        let message = decodeError(
            #"{"op":"apply","baseVersion":1,"changes":[{"action":"creating","entity":{"kind":"nope"}}]}"#)
        #expect(message?.contains("changes") == true)
        #expect(message?.contains("[0]") == true)
        #expect(message?.contains("kind") == true)
    }

    @Test("an unknown member is refused, so typos are not silently dropped")
    func unknownMember() {
        let message = decodeError(#"{"op":"ping","extra":true}"#)
        #expect(message?.contains("extra") == true)
    }

    @Test("bytes that are not JSON are refused")
    func notJSON() {
        #expect(decodeError("{op:") != nil)
    }
}
