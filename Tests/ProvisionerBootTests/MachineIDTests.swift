import ProvisionerBoot
import Testing

/// N8: a node's machine id is kept when it is one, and made once when it is not.
@Suite struct MachineIDTests {
    @Test(arguments: [
        ("0123456789abcdef0123456789abcdef\n", true),
        ("0123456789abcdef0123456789abcdef", true),
        ("0123456789ABCDEF0123456789ABCDEF\n", true),
        ("00000000000000000000000000000000\n", false),
        ("uninitialized\n", false),
        ("", false),
        ("\n", false),
        ("0123456789abcdef0123456789abcde\n", false),
        ("0123456789abcdef0123456789abcdef0\n", false),
        ("0123456789abcdef0123456789abcdeg\n", false),
        ("0123456789abcdef0123456789abcdef\n\n", false),
        (" 0123456789abcdef0123456789abcdef", false),
    ])
    func whatIsAMachineID(_ text: String, _ valid: Bool) {
        #expect(MachineID.isValid(text) == valid)
    }

    @Test func madeFromRandomBytes() {
        let text = MachineID.text(random: [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff] + Array(repeating: 0xa5, count: 10))
        #expect(text == "00017f80feff" + String(repeating: "a5", count: 10) + "\n")
        #expect(MachineID.isValid(text))
    }
}
