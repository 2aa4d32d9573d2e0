import ProvisionerAPI
import Testing

@testable import ProvisionerServer

/// The enrollment decision table (docs/certificates.md), row by row, and who may use a session
/// (A1–A5): pure, no server.
@Suite struct EnrollmentRulesTests {
    static func facts(_ change: (inout EnrollmentFacts) -> Void = { _ in }) -> EnrollmentFacts {
        var f = EnrollmentFacts(
            sessionNode: "n1", challenge: "c", requestName: "n1", requestChallenge: "c", requestKey: "sha256:new")
        change(&f)
        return f
    }

    @Test(arguments: [
        ("C1 no CA key", facts { $0.canSign = false }, EnrollmentRules.Rule.C1, "enrollment-unavailable"),
        ("C2 unassigned", facts { $0.sessionNode = nil }, .C2, "not-assigned"),
        ("C2 finished", facts { $0.sessionFinished = true }, .C2, "not-assigned"),
        ("C3 another node's certificate", facts { $0.caller = .node("n2") }, .C3, "not-your-session"),
        ("C4 replay", facts { $0.sessionVerified = true }, .C4, "already-enrolled"),
        ("C4 challenge used", facts { $0.challenge = nil }, .C4, "already-enrolled"),
        ("C5 another name", facts { $0.requestName = "n2" }, .C5, "csr-name-mismatch"),
        ("C6 no challenge", facts { $0.requestChallenge = nil }, .C6, "challenge-mismatch"),
        ("C6 another session's", facts { $0.requestChallenge = "d" }, .C6, "challenge-mismatch"),
        ("C7 revoked key", facts { $0.revokedKeys = ["sha256:new"]; $0.policy = .auto }, .C7, "key-revoked"),
        ("C7 revoked key, even approved", facts { $0.identity = .revoked; $0.revokedKeys = ["sha256:new"]; $0.approvedBy = "alice" }, .C7, "key-revoked"),
        ("I5 new key, approve", facts { $0.identity = .active; $0.enrolledKey = "sha256:old" }, .I5, "enrollment-needs-approval"),
        ("I6 revoked identity", facts { $0.identity = .revoked }, .I6, "enrollment-needs-approval"),
    ])
    func refusals(what: String, facts: EnrollmentFacts, rule: EnrollmentRules.Rule, code: String) {
        let verdict = EnrollmentRules.decide(facts)
        guard case .refuse(let got, _, let gotCode, _) = verdict else { Issue.record("\(what): \(verdict)"); return }
        #expect(got == rule, "\(what)")
        #expect(gotCode == code, "\(what)")
    }

    @Test(arguments: [
        ("I1 first", facts(), EnrollmentKind.first, EnrollmentRules.Rule.I1),
        ("I2 same key", facts { $0.identity = .active; $0.enrolledKey = "sha256:new" }, .renewed, .I2),
        ("I2 the node's own certificate", facts { $0.identity = .active; $0.enrolledKey = "sha256:new"; $0.caller = .node("n1") }, .renewed, .I2),
        ("I3 approved", facts { $0.identity = .active; $0.enrolledKey = "sha256:old"; $0.approvedBy = "alice" }, .approved, .I3),
        ("I3 approved after revoke, a new key", facts { $0.identity = .revoked; $0.revokedKeys = ["sha256:old"]; $0.approvedBy = "alice" }, .approved, .I3),
        ("I4 auto", facts { $0.identity = .active; $0.enrolledKey = "sha256:old"; $0.policy = .auto }, .reenrolled, .I4),
        ("I4 auto after revoke", facts { $0.identity = .revoked; $0.policy = .auto }, .reenrolled, .I4),
    ])
    func issues(what: String, facts: EnrollmentFacts, kind: EnrollmentKind, rule: EnrollmentRules.Rule) {
        #expect(EnrollmentRules.decide(facts) == .issue(kind, rule), "\(what)")
    }

    static func session(node: String? = "n1", verified: Bool = false) -> SessionSummary {
        SessionSummary(
            id: "s", node: node, macs: [], state: .running, openedAt: "", updatedAt: "", remoteAddress: nil,
            lastPhase: nil, lastMessage: nil, eventCount: 0, verified: verified)
    }

    @Test(arguments: [
        ("A1 admin", SessionCaller.admin("alice"), session(verified: true), SessionUse.finish(succeeded: true), nil as SessionAccess.Rule?),
        ("A2 own node", .node("n1"), session(verified: true), .events, nil),
        ("A2 another node", .node("n2"), session(), .poll, .A2),
        ("A2 a node, an unassigned session", .node("n2"), session(node: nil), .events, .A2),
        ("A3 bootstrap, verified", .bootstrap, session(verified: true), .poll, .A3),
        ("A4 bootstrap, success", .bootstrap, session(), .finish(succeeded: true), .A4),
        ("A5 bootstrap, its own unverified session", .bootstrap, session(), .events, nil),
        ("A5 bootstrap, a failure", .bootstrap, session(), .finish(succeeded: false), nil),
    ])
    func access(what: String, caller: SessionCaller, session: SessionSummary, use: SessionUse, rule: SessionAccess.Rule?) {
        #expect(SessionAccess.refusal(caller: caller, session: session, use: use)?.0 == rule, "\(what)")
    }
}
