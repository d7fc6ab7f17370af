# The base policy: the one place where a verdict is decided.
#
# It turns the effective level's rules (data.levels), the action's class, its risk score and the
# guardrails (package autonomy.guardrails) into data.autonomy.decision.result; the shape is the
# contract in policies/README.md.
#
# Fail closed: whatever is missing or malformed becomes a deny reason, never a silent pass.
# Both engines run this file (OPA and regopy), so it uses only built-ins regopy has (no net.*, no
# print, no any/all) and formats numbers itself (see num below).
#
# Only what depends on the input is checked here. The shape of the data (every level's risk limits,
# quorum and modes; class_approvers and approver groups) is static per bundle: package autonomy.config
# checks it once, when an engine loads the bundle, and the engine refuses a bundle that fails.
#
# Cost, in the embedded engine (regopy evaluates every rule the result depends on, on every query, at
# a few us a statement and more for a built-in call; docs/engines.md, "Cost model"): the common answer comes from
# a handful of rules, and what only some answers need (the detailed input and level messages, the
# approval checks) sits behind a condition that is false on the common path. Hence also: `some _ in s`
# rather than count(s) > 0 (no built-in call), comparisons rather than `x in {...}`, and a `default`
# for the boolean rules read more than once (regopy caches only a defined value: an undefined rule is
# evaluated again at every reference).
package autonomy.decision

import data.autonomy.guardrails
import data.autonomy.targets

# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

# METADATA
# title: The verdict on one proposed action (the entry point)
# description: >-
#   execute, approve, recommend or deny, with every reason, the approver groups and quorums, and the policy
#   revision. Always defined for a well-formed input (schema/input.schema.json); anything else the
#   controller treats as deny.
# entrypoint: true
# custom:
#   input_schema: schema/input.schema.json
#   data_schema: schema/data.schema.json
result := {
	"verdict": verdict,
	"reasons": sort(all_reasons),
	"deny_reasons": sorted(deny_reasons),
	"approval_reasons": sorted(approval_reasons),
	"approver_groups": approver_groups,
	"quorum": quorum,
	"approval_requirements": approval_requirements,
	"veto_window": veto_window,
	"policy_revision": policy_revision,
}

# Order matters: deny beats recommend (nothing shown as doable), recommend beats approve (a person
# acts, so nobody needs to approve the machine), approve beats execute.
default verdict := "deny"

verdict := "deny" if {
	some _ in deny_reasons
} else := "recommend" if {
	recommend_only
} else := "approve" if {
	some _ in approval_reasons
} else := "execute" if {
	mode == "execute"
}

approver_groups := sort(candidate_groups) if {
	verdict == "approve"
} else := []

quorum := required_quorum if {
	verdict == "approve"
} else := 0

# What each guardrail group must contribute on top of the quorum: `quorum` distinct approvers from
# approver_groups in all, and at least r.quorum of them members of r.group. Without this, two soc-oncall
# votes would meet a "2 iam-admins" requirement merely because both groups are approver groups.
approval_requirements := sort([{"group": r.group, "quorum": round(r.quorum)} |
	some r in guardrail_requirements
]) if {
	verdict == "approve"
} else := []

# Whether an approval nobody answers may fall back to the level's veto window (on_timeout:
# execute_reversible). Only when the level's mode for the class alone asked for a person: never when a
# guardrail did (a restore, a privileged account, a permanent or unrelated target, an unknown host: the
# guardrail says a person must approve, and silence is not approval), never above the auto limit (the
# risk said a person must decide), never for what cannot be undone.
default veto_window := false

veto_window if {
	verdict == "approve"
	mode == "approve"
	not above_auto_limit
	not some_guardrail_requirement
	not triage_falls_short
	input.action.reversible == true
}

default above_auto_limit := false

above_auto_limit if {
	risk_gated
	score > auto_max
}

default some_guardrail_requirement := false

some_guardrail_requirement if {
	some _ in guardrails.require_approval
}

# Every reason: deny, approval, and the level/risk explanation (no `|`: a built-in call each).
all_reasons contains msg if some msg in deny_reasons

all_reasons contains msg if some msg in approval_reasons

all_reasons contains msg if some msg in explanations

all_reasons contains msg if some msg in impact_reasons

default policy_revision := ""

policy_revision := data.meta.revision

# ---------------------------------------------------------------------------------------------
# The pieces the verdict is made of
# ---------------------------------------------------------------------------------------------

modes := {"execute", "approve", "recommend", "deny"}

level_name := input.level.effective

class := input.action.class

score := input.risk.score

# The effective level's rules. Never a bare condition (`level` rather than `level.enabled`): testing
# an object's truth costs regopy about 40 us.
level := data.levels[level_name]

# What the level lets the machine do with this class of action.
mode := level.classes[class]

auto_max := level.risk.auto_max

approve_max := level.risk.approve_max

default recommend_only := false

recommend_only if mode == "recommend"

# Triage short of the level's bar, at a level whose answer to that is "a person acts".
recommend_only if {
	triage_short
	triage_recommends
}

# Too risky for the machine even with approval: a person should decide and act.
recommend_only if {
	machine_mode
	risk_gated
	score > approve_max
}

# The modes in which the machine may act (with or without approval), where the risk limits apply.
default machine_mode := false

machine_mode if mode == "execute"

machine_mode if mode == "approve"

# The risk score says how much breaks if the action is wrong. An action with blast radius none
# (lookups, tickets, notifications) breaks nothing, so its level's mode alone decides: L1's
# "investigate: execute" means a lookup runs, whatever auto_max 0 would say. (The defaults here and
# below only make these rules defined, so that regopy evaluates each once: see the header.)
default risk_gated := false

risk_gated if not changes_nothing

default changes_nothing := false

changes_nothing if blast_radius == "none"

blast_radius := input.action.blast_radius

approval_reasons contains sprintf("%s requires approval for %s", [level_name, class]) if mode == "approve"

approval_reasons contains msg if {
	mode == "execute"
	risk_gated
	score > auto_max
	msg := sprintf(
		"risk %s above %s's auto limit %s: %s needs approval",
		[num(score), level_name, num(auto_max), class],
	)
}

approval_reasons contains r.reason if some r in guardrail_requirements

# Any `otherwise` but "recommend", a malformed or missing bar included, means a person approves.
approval_reasons contains triage_message if {
	triage_short
	not triage_recommends
}

default triage_recommends := false

triage_recommends if level.triage.otherwise == "recommend"

# ---------------------------------------------------------------------------------------------
# Triage: containment runs alone only when triage (input.triage: the controller's verdict from the
# sensors' facts, lowered by the planner's own when that says less) meets the level's bar
# (data.levels[L].triage). It can only take autonomy away: meeting the bar changes nothing.
# ---------------------------------------------------------------------------------------------

default containment := false

containment if class == "contain_network"

containment if class == "contain_host"

containment if class == "contain_identity"

# Containment the level would run alone, but triage has not said enough for that. A missing or
# malformed input.triage never meets a bar (fail closed: a person looks).
default triage_short := false

triage_short if {
	mode == "execute"
	triage_falls_short
}

# Whatever the mode: a veto window never runs containment whose triage is short of the bar either.
default triage_falls_short := false

triage_falls_short if {
	containment
	not triage_meets
}

default triage_meets := false

# The compiled levels always carry the key (null: no bar); a level without it has a malformed bar, never none.
triage_meets if level.triage == null

# is_number first: regopy orders null above every number.
triage_meets if {
	required := level.triage
	triage_rank[input.triage.verdict] >= triage_rank[required.verdict]
	is_number(input.triage.confidence)
	input.triage.confidence >= required.min_confidence
}

triage_rank := {"noise": 0, "suspicious": 1, "malicious": 2}

# Confidence as n/100: one decimal of a 0..1 number would print 0.95 as 1.
triage_said := sprintf("%s at confidence %s/100", [input.triage.verdict, num(input.triage.confidence * 100)]) if {
	is_string(input.triage.verdict)
	is_number(input.triage.confidence)
} else := "nothing usable (missing or malformed)"

triage_message := sprintf(
	"triage says %s; %s runs %s alone only on %s at confidence %s/100 or more: %s",
	[triage_said, level_name, class, level.triage.verdict, num(level.triage.min_confidence * 100), triage_outcome],
) if {
	is_string(level.triage.verdict)
	is_number(level.triage.min_confidence)
} else := sprintf("%s's triage bar is missing or malformed: a person approves", [level_name])

triage_outcome := "recommend only" if triage_recommends

else := "a person approves"

# One line that says why the verdict is what it is when no deny or approval reason does.
explanations contains sprintf("%s only recommends %s: a person decides and acts", [level_name, class]) if {
	verdict == "recommend"
	mode == "recommend"
}

explanations contains triage_message if {
	verdict == "recommend"
	triage_short
}

explanations contains msg if {
	verdict == "recommend"
	mode != "recommend"
	not triage_short
	msg := sprintf(
		"risk %s above %s's approval limit %s: recommend only",
		[num(score), level_name, num(approve_max)],
	)
}

explanations contains msg if {
	verdict == "execute"
	risk_gated
	msg := sprintf(
		"%s lets %s execute alone; risk %s within auto limit %s",
		[level_name, class, num(score), num(auto_max)],
	)
}

explanations contains msg if {
	verdict == "execute"
	changes_nothing
	msg := sprintf("%s lets %s execute alone; blast radius none, so risk %s is not gated", [level_name, class, num(score)])
}

# ---------------------------------------------------------------------------------------------
# Impact (input.impact: how far the case's attack got, from sensor facts only: what the sensors blocked
# and what the application answered, never request text; controller/attackers/impact.py, docs/attackers.md). It
# names what an attack reached among the reasons, and does nothing else here: no verdict, mode, limit, quorum
# or veto window reads it (the risk score's impact credit is the controller's, levels/risk.yaml; the one
# guardrail that reads it, guardrails/entities.rego, asks a person to isolate a host it does not name).
# A missing or malformed impact names nothing; malformed assets name none.
# concat, not sprintf: regopy quotes a concat result given to sprintf.
# ---------------------------------------------------------------------------------------------

impact_reasons contains concat("", [
	"impact likely: an attack reached ", impact_assets,
	" (the application answered an attack request no sensor refused; a person confirms)",
]) if {
	input.impact.verdict == "likely"
}

impact_reasons contains concat("", [
	"impact confirmed: post-exploitation alerts from the source; an attack reached ", impact_assets,
]) if {
	input.impact.verdict == "confirmed"
}

impact_assets := concat(", ", sort(assets)) if {
	assets := input.impact.assets
	some _ in assets
	assets == [a | some a in assets; is_string(a)]
} else := "an asset it did not name"

# ---------------------------------------------------------------------------------------------
# Deny reasons
# ---------------------------------------------------------------------------------------------

deny_reasons contains deny_text(msg) if some msg in guardrails.deny

# The guardrails answer sets (`deny contains msg if {...}`). Any other answer (`deny := "text"`, a boolean) has
# nothing for `some msg in` to find, so the action would run: OPA's type checker refuses such a module when it
# compiles (the wasm engine, an OPA server), regopy has no type checker. A guardrail answer that is undefined (no
# rule of that name) is fine: nothing to deny. An object of reasons is read above and named here.
deny_reasons contains "data.autonomy.guardrails.deny is not a set: write `deny contains ... if { ... }`" if {
	answer := guardrails.deny
	not is_set(answer)
}

deny_reasons contains "data.autonomy.guardrails.require_approval is not a set: write `require_approval contains ... if { ... }`" if {
	answer := guardrails.require_approval
	not is_set(answer)
}

# A guardrail bug must not turn a deny into a pass.
deny_text(msg) := msg if {
	is_string(msg)
} else := "a guardrail returned a deny reason that is not a string"

# The input and level checks: one fast rule (checks_pass) on the common path, and the detailed messages
# only when it fails.
deny_reasons contains msg if {
	not checks_pass
	some msg in input_problems
}

deny_reasons contains msg if {
	not checks_pass
	some msg in level_errors
}

# Approval checks only where an approval is the outcome: cheaper, and nothing else needs them.
deny_reasons contains msg if {
	would_approve
	some msg in approval_errors
}

# --- one fast check -------------------------------------------------------------------------
# Everything the input and the level must be, in one rule, one pass: a well-formed input whose level
# runs this class costs just this. Only when it fails are input_errors and level_errors computed, and
# they then say what is wrong. (The mode lookup succeeding makes the level and class names strings: data
# keys are strings.) package autonomy.targets says whether input.targets.ips is an array of well-formed
# targets only (the guardrails iterate them). Hosts and users must be arrays of strings: a list equals
# its strings only then (a missing list is undefined, an object or a scalar never equals an array), and
# for the usual empty lists that costs regopy no built-in call at all, unlike is_array plus `every`.
checks_pass if {
	level.enabled == true
	runnable_mode
	is_string(input.action.name)
	known_blast_radius
	valid_score
	targets.all_well_formed
	input.targets.hosts == [host | some host in input.targets.hosts; is_string(host)]
	input.targets.users == [user | some user in input.targets.users; is_string(user)]
	input.targets.unrelated == [value | some value in input.targets.unrelated; is_string(value)]
	plan_counted
}

# The plan guardrails read these counts; a missing or non-numeric count would let their caps pass.
plan_counted if {
	is_number(input.plan.class_actions)
	is_number(input.plan.class_addresses)
	input.plan.class_actions >= 0
	input.plan.class_addresses >= 0
}

runnable_mode if machine_mode

runnable_mode if mode == "recommend"

known_blast_radius if changes_nothing

known_blast_radius if targets.target_kinds[blast_radius]

# --- the level -------------------------------------------------------------------------------
# Only what this input selects; the levels' own shape is package autonomy.config's job.

level_errors contains sprintf("level %s is not defined in data.levels", [level_name]) if {
	is_string(level_name)
	not level_defined
}

# L5 ships disabled; a level runs only when it says enabled: true.
level_errors contains sprintf("level %s is disabled", [level_name]) if {
	level_defined
	not level_enabled
}

level_errors contains sprintf("%s defines no mode for class %s", [level_name, class]) if {
	level_defined
	is_string(class)
	not mode
}

level_errors contains sprintf("%s denies class %s", [level_name, class]) if mode == "deny"

# autonomy.config refuses such a level at load; checked here too because the verdict has no branch
# for another mode, and a deny must say why.
level_errors contains msg if {
	mode
	not mode in modes
	msg := sprintf("%s gives class %s an unknown mode (not execute, approve, recommend or deny)", [level_name, class])
}

level_defined if is_object(level)

level_enabled if level.enabled == true

# --- the input -------------------------------------------------------------------------------

blast_radii := {"none", "single_address", "network_range", "host", "identity"}

# The messages, checked one by one. They read fields through field(): in OPA, `not is_string(input.x)`
# is *undefined* when input.x is missing (the ref is hoisted out of the negation,
# open-policy-agent/opa#1877), while regopy says true. field() is always defined, so both engines
# report the missing field.
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
	some kind in ["ips", "hosts", "users", "unrelated"]
	not is_array(field(["targets", kind]))
}

input_errors contains sprintf("input.targets.%s holds a value that is not a string", [kind]) if {
	some kind in ["hosts", "users", "unrelated"]
	some value in input.targets[kind]
	not is_string(value)
}

input_errors contains sprintf("input.targets.ips[%d] is malformed: it needs value, version, prefix_len and bits", [i]) if {
	is_array(input.targets.ips)
	some i, target in input.targets.ips
	not targets.well_formed_ip(target)
}

input_errors contains "input.plan.class_actions and class_addresses must be counts" if not plan_counted

# checks_pass and the detailed messages say one thing twice (a fast yes, a detailed no). Should a change
# ever make them disagree, the decision is still a deny.
input_problems := input_errors if {
	count(input_errors | level_errors) > 0
} else := {"input or level rejected by the policy's checks"}

# No is_number: both comparisons hold only for a number. Each engine orders every other type either below
# all numbers or above them (OPA: null < booleans < numbers < strings < arrays < objects; regopy puts strings
# below numbers and the rest above), so any non-number fails one of the two.
valid_score if {
	score >= 0
	score <= 100
}

# --- approval must be possible ---------------------------------------------------------------
# An approval nobody can give ends in the level's on_timeout rule, which at L4 runs a reversible
# action anyway. So an unreachable quorum is a deny now. Static mistakes (a class_approvers group
# not defined, a service identity in any approver group) are package autonomy.config's: the engines
# refuse such a bundle at load. Checked here: what the input decides (the class, the groups the
# guardrails add, the proposer, who never approves their own proposal).

would_approve if {
	machine_mode
	not recommend_only
	some _ in approval_reasons
}

approval_errors contains sprintf("nobody can approve %s: no approver group is configured for it", [class]) if {
	count(candidate_groups) == 0
}

approval_errors contains sprintf("approver group %s is not defined in data.identities.approver_groups", [r.group]) if {
	some r in guardrail_requirements
	not group_defined(r.group)
}

approval_errors contains quorum_unmet if {
	count(candidate_groups) > 0
	count(eligible_approvers) < required_quorum
}

approval_errors contains msg if {
	some r in guardrail_requirements
	group_defined(r.group)
	members := group_members(r.group)
	eligible := {m | some m in members} - {proposer}
	count(eligible) < r.quorum
	msg := sprintf("%s needs %d approvers from %s, which has only %d eligible", [r.reason, round(r.quorum), r.group, count(eligible)])
}

# A rule of its own, so that regopy builds the text only when the quorum is unmet.
# concat, not sprintf("%s", [concat(...)]): regopy would print the inner concat result in quotes.
quorum_unmet := concat("", [
	sprintf("quorum %d cannot be met: only %d eligible approvers in ", [required_quorum, count(eligible_approvers)]),
	concat(", ", sort(candidate_groups)),
])

# Data objects are bound to a local before an argument indexes them: regopy walks the whole object for
# data.x[arg] in a function.
group_defined(group) if {
	groups := data.identities.approver_groups
	is_object(groups[group])
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

# The level's quorum, or a guardrail's when larger. Without guardrail requirements (the usual case)
# no comparison is needed.
required_quorum := round(level_quorum) if {
	count(guardrail_requirements) == 0
} else := largest({level_quorum} | {r.quorum | some r in guardrail_requirements})

level_quorum := level.approval.quorum

# Separation of duties: the candidate groups' members, never the proposer itself. No service identity
# is among them: autonomy.config refuses a bundle whose approver groups list one (checked once at load,
# not per decision: that set difference alone cost regopy about 40 us a decision).
eligible_approvers := candidate_members - {proposer}

candidate_members := {member |
	some group in candidate_groups
	members := group_members(group)
	some member in members
}

group_members(group) := members if {
	groups := data.identities.approver_groups
	definition := groups[group]
	members := definition.members
}

default proposer := null

proposer := input.context.proposer

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

# sort(s), without the built-in call when s is empty (deny and approval reasons usually are).
sorted(s) := sort(s) if {
	some _ in s
} else := []

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
#
# The text of every tenth from 0 to 100 is compiled into data.number_text (controller/decision/policy_bundle.py;
# autonomy.config checks it against number_text_of at load): one array lookup, where the arithmetic costs
# regopy about 40 us a number and each decision prints two. Outside 0..100, or without the table (the
# policy's own tests), the arithmetic runs.
num(n) := text if {
	tenths := round(n * 10)
	text := data.number_text[tenths]
} else := number_text_of(n)

# Written around regopy 1.5.2 bugs: `300 % 10` there is not equal to 0 (so no %), and it quotes a
# format_int/concat result given to sprintf (so sprintf only). Checked equal to OPA on 12,000 values.
number_text_of(n) := sprintf("%d%s", [units, decimals[tenths - (units * 10)]]) if {
	tenths := round(n * 10)
	units := floor(tenths / 10)
}

decimals := ["", ".1", ".2", ".3", ".4", ".5", ".6", ".7", ".8", ".9"]
