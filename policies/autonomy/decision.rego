# The base policy: the one place where a verdict is decided.
#
# It turns the effective level's rules (data.levels), the action's class, its risk score and the
# guardrails (package autonomy.guardrails) into data.autonomy.decision.result; the shape is the
# contract in policies/README.md.
#
# Fail closed: whatever is missing or malformed becomes a deny reason, never a silent pass.
# Both engines run this file (OPA and regopy), so it uses only built-ins regopy has (no net.*, no
# print, no any/all) and formats numbers itself (see num below).
package autonomy.decision

import data.autonomy.guardrails

# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

result := {
	"verdict": verdict,
	"reasons": sort(all_reasons),
	"deny_reasons": sort(deny_reasons),
	"approval_reasons": sort(approval_reasons),
	"approver_groups": approver_groups,
	"quorum": quorum,
	"policy_revision": policy_revision,
}

# Order matters: deny beats recommend (nothing shown as doable), recommend beats approve (a person
# acts, so nobody needs to approve the machine), approve beats execute.
default verdict := "deny"

verdict := "deny" if {
	count(deny_reasons) > 0
} else := "recommend" if {
	recommend_only
} else := "approve" if {
	count(approval_reasons) > 0
} else := "execute" if {
	mode == "execute"
}

approver_groups := sort(candidate_groups) if {
	verdict == "approve"
} else := []

quorum := required_quorum if {
	verdict == "approve"
} else := 0

# Every reason: deny, approval, and the level/risk explanation.
all_reasons := (deny_reasons | approval_reasons) | explanations

default policy_revision := ""

policy_revision := data.meta.revision

# ---------------------------------------------------------------------------------------------
# The pieces the verdict is made of
# ---------------------------------------------------------------------------------------------

modes := {"execute", "approve", "recommend", "deny"}

level_name := input.level.effective

level := data.levels[level_name]

class := input.action.class

score := input.risk.score

# What the level lets the machine do with this class of action.
mode := level.classes[class]

recommend_only if mode == "recommend"

# Too risky for the machine even with approval: a person should decide and act.
recommend_only if {
	mode in {"execute", "approve"}
	risk_gated
	score > level.risk.approve_max
}

# The risk score says how much breaks if the action is wrong. An action with blast radius none
# (lookups, tickets, notifications) breaks nothing, so its level's mode alone decides: L1's
# "investigate: execute" means a lookup runs, whatever auto_max 0 would say.
risk_gated if not field(["action", "blast_radius"]) == "none"

approval_reasons contains sprintf("%s requires approval for %s", [level_name, class]) if mode == "approve"

approval_reasons contains msg if {
	mode == "execute"
	risk_gated
	score > level.risk.auto_max
	msg := sprintf(
		"risk %s above %s's auto limit %s: %s needs approval",
		[num(score), level_name, num(level.risk.auto_max), class],
	)
}

approval_reasons contains r.reason if some r in guardrail_requirements

# One line that says why the verdict is what it is when no deny or approval reason does.
explanations contains sprintf("%s only recommends %s: a person decides and acts", [level_name, class]) if {
	verdict == "recommend"
	mode == "recommend"
}

explanations contains msg if {
	verdict == "recommend"
	mode != "recommend"
	msg := sprintf(
		"risk %s above %s's approval limit %s: recommend only",
		[num(score), level_name, num(level.risk.approve_max)],
	)
}

explanations contains msg if {
	verdict == "execute"
	risk_gated
	msg := sprintf(
		"%s lets %s execute alone; risk %s within auto limit %s",
		[level_name, class, num(score), num(level.risk.auto_max)],
	)
}

explanations contains msg if {
	verdict == "execute"
	not risk_gated
	msg := sprintf("%s lets %s execute alone; blast radius none, so risk %s is not gated", [level_name, class, num(score)])
}

# ---------------------------------------------------------------------------------------------
# Deny reasons
# ---------------------------------------------------------------------------------------------

deny_reasons contains msg if {
	some msg in guardrails.deny
	is_string(msg)
}

# A guardrail bug must not turn a deny into a pass.
deny_reasons contains "a guardrail returned a deny reason that is not a string" if {
	some msg in guardrails.deny
	not is_string(msg)
}

deny_reasons contains msg if some msg in input_errors

deny_reasons contains msg if some msg in level_errors

deny_reasons contains msg if some msg in approval_errors

# --- the level -------------------------------------------------------------------------------

level_errors contains sprintf("level %s is not defined in data.levels", [level_name]) if {
	is_string(level_name)
	not data.levels[level_name]
}

# L5 ships disabled; a level runs only when it says enabled: true.
level_errors contains sprintf("level %s is disabled", [level_name]) if {
	level
	not level_enabled
}

level_errors contains sprintf("%s defines no mode for class %s", [level_name, class]) if {
	level
	is_string(class)
	not level.classes[class]
}

level_errors contains sprintf("%s denies class %s", [level_name, class]) if mode == "deny"

level_errors contains msg if {
	mode
	not mode in modes
	msg := sprintf("%s gives class %s an unknown mode (not execute, approve, recommend or deny)", [level_name, class])
}

level_errors contains sprintf("%s's risk limits must satisfy 0 <= auto_max <= approve_max <= 100", [level_name]) if {
	level
	not risk_limits_ok
}

level_errors contains sprintf("%s's approval.quorum must be a whole number of at least 1", [level_name]) if {
	level
	not level_quorum_ok
}

level_enabled if level.enabled == true

level_quorum_ok if positive_whole(level.approval.quorum)

risk_limits_ok if {
	is_number(level.risk.auto_max)
	is_number(level.risk.approve_max)
	0 <= level.risk.auto_max
	level.risk.auto_max <= level.risk.approve_max
	level.risk.approve_max <= 100
}

# --- the input -------------------------------------------------------------------------------

blast_radii := {"none", "single_address", "network_range", "host", "identity"}

address_width := {4: 32, 6: 128}

# Checks read fields through field(): in OPA, `not is_string(input.x)` is *undefined* when input.x is
# missing (the ref is hoisted out of the negation, open-policy-agent/opa#1877), while regopy says true.
# field() is always defined, so both engines report the missing field.
input_errors contains "input.action.name is missing or not a string" if not is_string(field(["action", "name"]))

input_errors contains "input.action.class is missing or not a string" if not is_string(field(["action", "class"]))

input_errors contains "input.action.blast_radius is missing or unknown" if {
	not field(["action", "blast_radius"]) in blast_radii
}

input_errors contains "input.level.effective is missing or not a string" if {
	not is_string(field(["level", "effective"]))
}

input_errors contains "input.risk.score is missing or not a number from 0 to 100" if not valid_score

# The guardrails check targets; a target list they cannot read would let them pass vacuously.
input_errors contains sprintf("input.targets.%s is missing or not an array", [kind]) if {
	some kind in ["ips", "hosts", "users"]
	not is_array(field(["targets", kind]))
}

input_errors contains sprintf("input.targets.%s holds a value that is not a string", [kind]) if {
	some kind in ["hosts", "users"]
	some value in input.targets[kind]
	not is_string(value)
}

input_errors contains sprintf("input.targets.ips[%d] is malformed: it needs value, version, prefix_len and bits", [i]) if {
	is_array(input.targets.ips)
	some i, target in input.targets.ips
	not well_formed_ip(target)
}

valid_score if {
	is_number(score)
	score >= 0
	score <= 100
}

# bits carries the prefix in binary, one character per prefix bit (README, "Input document").
well_formed_ip(t) if {
	is_string(t.value)
	width := address_width[t.version]
	whole(t.prefix_len)
	t.prefix_len >= 0
	t.prefix_len <= width
	is_string(t.bits)
	count(t.bits) == t.prefix_len
	regex.match(`^[01]*$`, t.bits)
}

# --- approval must be possible ---------------------------------------------------------------
# An approval nobody can give ends in the level's on_timeout rule, which at L4 runs a reversible
# action anyway. So an unreachable quorum, or a machine among the approvers, is a deny now.

would_approve if {
	mode in {"execute", "approve"}
	not recommend_only
	count(approval_reasons) > 0
}

approval_errors contains sprintf("nobody can approve %s: no approver group is configured for it", [class]) if {
	would_approve
	count(candidate_groups) == 0
}

approval_errors contains sprintf("approver group %s is not defined in data.identities.approver_groups", [group]) if {
	would_approve
	some group in candidate_groups
	not data.identities.approver_groups[group]
}

approval_errors contains msg if {
	would_approve
	some group in candidate_groups
	some member in data.identities.approver_groups[group].members
	member in service_identities
	msg := sprintf("approver group %s lists service identity %s: a machine never approves", [group, member])
}

approval_errors contains msg if {
	would_approve
	count(candidate_groups) > 0
	count(eligible_approvers) < required_quorum

	# concat, not sprintf("%s", [concat(...)]): regopy would print the inner concat result in quotes.
	msg := concat("", [
		sprintf("quorum %d cannot be met: only %d eligible approvers in ", [required_quorum, count(eligible_approvers)]),
		concat(", ", sort(candidate_groups)),
	])
}

# Guardrail approval requirements: {reason, group, quorum}. A malformed one is a deny, not ignored.
guardrail_requirements contains r if {
	some r in guardrails.require_approval
	well_formed_requirement(r)
}

deny_reasons contains "a guardrail approval requirement is malformed (needs reason, group and a whole quorum >= 1)" if {
	some r in guardrails.require_approval
	not well_formed_requirement(r)
}

well_formed_requirement(r) if {
	is_string(r.reason)
	is_string(r.group)
	positive_whole(r.quorum)
}

candidate_groups := {group | some group in data.identities.class_approvers[class]} | {r.group | some r in guardrail_requirements}

required_quorum := largest({level.approval.quorum} | {r.quorum | some r in guardrail_requirements}) if level_quorum_ok

service_identities := {s | some s in data.identities.service_identities}

# Separation of duties: no service identity, and never the proposer itself.
eligible_approvers contains member if {
	some group in candidate_groups
	some member in data.identities.approver_groups[group].members
	not member in service_identities
	not proposed_by(member)
}

proposed_by(member) if member == input.context.proposer

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

# The input, or {} when there is none (or it is not an object).
default input_document := {}

input_document := input if is_object(input)

# The value at path in the input, or null when it is missing.
field(path) := object.get(input_document, path, null)

whole(n) if {
	is_number(n)
	floor(n) == n
}

positive_whole(n) if {
	whole(n)
	n >= 1
}

# The largest of a set of whole numbers, as an integer. Not max(): regopy 1.5.2's max and min
# compare numbers as text (max([2, 10]) is 2 there). round() makes 2.0 and 2 the same output.
largest(numbers) := round(n) if {
	some n in numbers
	count({m | some m in numbers; m > n}) == 0
}

# Numbers in reasons: at most one decimal, printed from integers. OPA prints a float in its shortest
# round-trip form and regopy with 15 significant digits (33.333333333333336 vs 33.33333333333334),
# so sprintf("%v") of a float is not the same text in both engines. Inputs here are 0..100.
# Written around regopy 1.5.2 bugs: `300 % 10` there is not equal to 0 (so no %), and it quotes a
# format_int/concat result given to sprintf (so sprintf only). Checked equal to OPA on 1,400 values.
num(n) := sprintf("%d", [units]) if {
	tenths := round(n * 10)
	units := floor(tenths / 10)
	tenths - (units * 10) == 0
}

num(n) := sprintf("%d.%d", [units, tenth]) if {
	tenths := round(n * 10)
	units := floor(tenths / 10)
	tenth := tenths - (units * 10)
	tenth != 0
}
