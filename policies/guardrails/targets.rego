# Target guardrail: an action that changes something must name what it changes.
#
# Every other guardrail iterates over input.targets; with an empty list they would all pass vacuously.
# The action's blast radius (registry metadata) says which kind of target it must carry.
package autonomy.guardrails

target_kind_for_blast_radius := {
	"single_address": "ips",
	"network_range": "ips",
	"host": "hosts",
	"identity": "users",
}

deny contains msg if {
	kind := target_kind_for_blast_radius[input.action.blast_radius]
	count(object.get(input, ["targets", kind], [])) == 0
	msg := sprintf(
		"%s has blast radius %s but names no target in targets.%s: nothing to check it against",
		[input.action.name, input.action.blast_radius, kind],
	)
}
