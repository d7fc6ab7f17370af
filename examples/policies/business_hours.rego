# Accounts are disabled alone only in business hours.
# Example (c) of policies/README.md, "Writing your own policy". Outside 08:00-18:00 UTC nobody is at hand
# to notice a wrongly disabled account, so a person approves. The rule reads the decision time the
# controller gives (input.time: the clock live, the alert's time in simulate), never time.now_ns(): the
# same input gives the same verdict, in tests and in replays.
package autonomy.guardrails

# METADATA
# title: Approval by iam-admins to disable an account outside 08:00-18:00 UTC
# custom:
#   example: c
require_approval contains {
	"reason": sprintf("%s on %s at %s: outside business hours (08:00-18:00 UTC), a person approves", [input.action.name, user, decision_time]),
	"group": "iam-admins",
	"quorum": 1,
} if {
	input.action.name == "identity.disable_user"
	not business_hours
	some user in user_targets
}

# Missing or malformed time is not business hours: the rule then asks for a person (fail closed).
business_hours if {
	[hour, _, _] := time.clock([input.time.now_ns, "UTC"])
	hour >= 8
	hour < 18
}

# The time for the reason. object.get, not input.time.rfc3339: a missing time would make the whole rule
# undefined in OPA (its head would not evaluate), and the approval would silently not be asked for.
decision_time := object.get(input, ["time", "rfc3339"], "an unknown time")
