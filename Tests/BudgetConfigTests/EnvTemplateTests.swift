import BudgetConfig
import Testing

@Suite("decK's ${{ env }} templating")
struct EnvTemplateTests {
    let template = EnvTemplate(environment: ["DECK_KEY": "s3cret", "DECK_PORT": "8443", "DECK_ON": "1", "OTHER": "x"])

    @Test("replaces DECK_ variables and leaves the rest of the line alone")
    func substitutes() {
        let result = template.render(
            "key: ${{ env \"DECK_KEY\" }} # note\nport: ${{env \"DECK_PORT\"|toInt}}\n",
            file: "f.yaml")
        #expect(result.diagnostics.diagnostics.isEmpty)
        #expect(result.text == "key: s3cret # note\nport: 8443\n")
        #expect(result.substitutedValues == ["s3cret", "8443"])
    }

    @Test("toBool prints Go's true or false")
    func toBool() {
        #expect(template.render("a: ${{ env \"DECK_ON\" | toBool }}", file: "f").text == "a: true")
    }

    @Test("expressions on comment lines are left alone, even unset ones")
    func commentLines() {
        let text = "  # key: ${{ env \"DECK_UNSET\" }}\nkey: 1\n"
        let result = template.render(text, file: "f.yaml")
        #expect(result.diagnostics.diagnostics.isEmpty)
        #expect(result.text == text)
    }

    @Test("names without the DECK_ prefix are refused with decK's message")
    func prefixRule() {
        let result = template.render("a: b\nkey: ${{ env \"OTHER\" }}\n", file: "f.yaml")
        #expect(
            result.diagnostics.rendered == [
                "f.yaml:2:6: environment variables in the state file must be prefixed with 'DECK_', found: 'OTHER'"
            ])
    }

    @Test("an unset variable is an error at its place, not an empty string")
    func unset() {
        let result = template.render("key:   ${{ env \"DECK_MISSING\" }}", file: "f.yaml")
        #expect(
            result.diagnostics.rendered == [
                "f.yaml:1:8: environment variable 'DECK_MISSING' present in state file but not set"
            ])
    }

    @Test("unsupported functions, bad conversions and unclosed expressions are located errors")
    func malformed() {
        let result = template.render(
            """
            a: ${{ env "DECK_KEY" | upper }}
            b: ${{ env "DECK_KEY" | toInt }}
            c: ${{ lookup "x" }}
            d: ${{ env "DECK_KEY"
            """, file: "f.yaml")
        #expect(
            result.diagnostics.rendered == [
                "f.yaml:1:4: unsupported template function \"upper\"; toBool, toInt and toFloat are supported",
                "f.yaml:2:4: environment variable 'DECK_KEY' is not an integer, as toInt needs",
                "f.yaml:3:4: unsupported template expression \"${{ lookup \"x\" }}\"; only ${{ env \"DECK_NAME\" }}, "
                    + "optionally piped to toBool, toInt or toFloat, is supported",
                "f.yaml:4:4: template expression is not closed with \"}}\"",
            ])
    }

    @Test("a value with a line break is refused, since it would move every later line")
    func multiline() {
        let result = EnvTemplate(environment: ["DECK_X": "a\nb"]).render("x: ${{ env \"DECK_X\" }}", file: "f")
        #expect(result.diagnostics.hasErrors)
    }
}
