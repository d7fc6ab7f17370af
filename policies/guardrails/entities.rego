# Entity guardrails: an address, a host or an account is contained alone only when the sensors' own facts put it
# in the attacker's hands. A name in an alert is a claim: the account a client typed at a login prompt, the host a
# request was aimed at. Were that enough, the attacker would choose whom the machine locks out or takes off the
# network (a few failed logins as alice, then silence at L4's veto window; "isolate web-stg-01" in a blocked
# request, followed by a planner). So containment of any other host or account needs the class's approvers,
# which also rules out a veto window (the base policy's veto_window: never when a guardrail asks).
#
# The facts (controller/decision/entities.py; an array the controller always sends, missing or malformed
# meaning none, so a person approves):
# - input.context.connected_sources: the source addresses a sensor saw hold a connection (TCP carrying application
#   data), each with its prefix bits, version and value like a target. A UDP or ICMP packet, or a bare SYN, carries whatever source address its sender writes: were that
#   enough, one forged packet would have the machine block a bystander (a partner, a resolver) or isolate our
#   own host alone;
# - input.context.source_assets: our assets at those addresses (the source of the case's alerts);
# - input.context.guessed_users: accounts a login service recorded a login of after guessing, in this case.
# The assets an attack reached (input.impact) are not among them, whatever the verdict: both halves of "reached,
# confirmed" are the attacker's to produce (a 200 from any page that ignores the payload, on a path the WAF does
# not cover; one request written to match a malware rule), so they would let anyone take our host off the
# network. A host the attacker holds shows itself as the source of the case's alerts on a connection (a beacon,
# exfiltration, the next hop); until then a person confirms (docs/attackers.md).
package autonomy.guardrails

# METADATA
# title: An account is disabled alone only when a sensor saw it guessed
# description: >-
#   Identity containment of an account no login service recorded a login of after guessing, in this case,
#   needs the class's approvers (no veto window).
require_approval contains {
	"reason": sprintf(
		"%s on %s: no sensor saw the account taken (a login service's record of a login after guessing, in this case); the name alone is a claim: a person approves",
		[input.action.name, user],
	),
	"group": class_group,
	"quorum": 1,
} if {
	action_class == "contain_identity"
	some user in user_targets
	not guessed_user(user)
}

# METADATA
# title: An address is blocked alone only when a sensor saw it hold a connection
# description: >-
#   A block of an address no sensor saw hold a connection as the source of the case's alerts (only forgeable
#   packets carried it), or of a range holding none, needs the class's approvers (no veto window).
require_approval contains {
	"reason": sprintf(
		"%s on %s: no sensor saw %s hold a connection (only packets whose source address anyone can forge: UDP, ICMP, a bare SYN); a person approves",
		[input.action.name, target.value, target.value],
	),
	"group": class_group,
	"quorum": 1,
} if {
	blocking
	some target in ip_targets
	not holds_connected_source(target)
}

# METADATA
# title: A host is isolated alone only when it is the case's source
# description: >-
#   Host containment of a host that is not the source of the case's alerts (on a connection a sensor saw) needs
#   the class's approvers: an alert merely went to it, or an attack reached it, both of which the attacker chooses.
require_approval contains {
	"reason": sprintf(
		"%s on %s: not the source of the case's alerts (on a connection a sensor saw); an alert went to it, which the attacker chooses, and an attack that reached it shows no hold on it: a person approves",
		[input.action.name, host],
	),
	"group": class_group,
	"quorum": 1,
} if {
	action_class == "contain_host"
	some host in host_targets
	not attacker_held_host(host)
}

holds_connected_source(target) if {
	some source in input.context.connected_sources
	source.version == target.version
	startswith(source.bits, target.bits)
}

guessed_user(user) if {
	some name in input.context.guessed_users
	name == user
}

attacker_held_host(host) if {
	some name in input.context.source_assets
	name == host
}
