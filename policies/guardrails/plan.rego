# Plan guardrails: what a whole plan may do alone, and which containment needs a person whatever the level.
#
# The per-action caps (network.rego) judge one action; a plan of 14 one-address blocks passes each of them.
# So the controller tells the policy how much of this action's class the whole plan holds (input.plan), and
# which of the action's targets name nothing the incident's sensors reported (input.targets.unrelated): a
# planner steered by alert text may aim at anyone, and only what the sensors saw is evidence.
package autonomy.guardrails

default containment := false

containment if action_class == "contain_network"

containment if action_class == "contain_host"

containment if action_class == "contain_identity"

# Containment without an end (no ttl_seconds) stays until someone lifts it: a person decides that, at every
# level. (An isolation or a disable without a TTL is as permanent as a block without one.)

# METADATA
# title: Permanent containment needs a person
# description: Containment without ttl_seconds needs the class's own approver group, at every level.
require_approval contains {
	"reason": sprintf("%s has no ttl_seconds: permanent containment needs a person at every level", [input.action.name]),
	"group": class_group,
	"quorum": 1,
} if {
	containment
	not bounded
}

# A rule with a default, not a `not` over the input path: a missing field must count as no TTL in both engines.
default bounded := false

# is_number first: regopy orders null above every number (null > 0 holds there).
bounded if {
	is_number(input.action.ttl_seconds)
	input.action.ttl_seconds > 0
}

# A target the incident's alerts never named (another address, host or user than the sensors reported).

# METADATA
# title: Containing a target no alert names needs a person
# description: Containment of targets.unrelated needs the class's approvers.
require_approval contains {
	"reason": sprintf("%s on %s: not an entity of this incident (no alert names it)", [input.action.name, value]),
	"group": class_group,
	"quorum": 1,
} if {
	containment
	some value in input.targets.unrelated
}

# More containment actions of one class in one plan than the cap: a person looks at the whole plan.

# METADATA
# title: Too many containment actions in a plan need a person
# description: More than guardrails.max_containment_actions_per_plan actions of one class need the class's approvers.
require_approval contains {
	"reason": sprintf(
		"the plan holds %d %s actions, more than the %d per plan the machine runs alone",
		[input.plan.class_actions, action_class, max_actions_per_plan],
	),
	"group": class_group,
	"quorum": 1,
} if {
	containment
	is_number(input.plan.class_actions) # the engines order other types apart (the base policy denies them)
	input.plan.class_actions > max_actions_per_plan
}

# More addresses blocked by the whole plan than one block may cover: a person looks at the whole plan. Not a
# deny: a planner steered by alert text could then add one wide block to stop the rightful one (an action over
# the per-action cap is denied by itself, network.rego).

# METADATA
# title: Too many addresses in a plan need a person
# description: A plan blocking more than guardrails.max_addresses_per_plan addresses in all needs the class's approvers.
require_approval contains {
	"reason": sprintf("the plan blocks more than %d addresses in all: a person looks at the whole plan", [max_addresses_per_plan]),
	"group": class_group,
	"quorum": 1,
} if {
	blocking
	is_number(input.plan.class_addresses)
	input.plan.class_addresses > max_addresses_per_plan
}

default max_actions_per_plan := 3

max_actions_per_plan := data.guardrails.max_containment_actions_per_plan

default max_addresses_per_plan := 256

max_addresses_per_plan := data.guardrails.max_addresses_per_plan

# The class's own approvers answer for its guardrails: adding another group would let it approve alone what
# only the class's group may (soc-oncall approving an account disable that is iam-admins' call).
class_group := group if {
	approvers := data.identities.class_approvers
	groups := approvers[action_class]
	group := groups[0]
}
