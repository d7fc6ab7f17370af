package business_hours_test

import data.autonomy.guardrails

# The decision time as the controller gives it (input.time).
at(rfc3339) := {"now_ns": time.parse_rfc3339_ns(rfc3339), "rfc3339": rfc3339}

disable := {"action": {"class": "contain_identity", "name": "identity.disable_user"}, "targets": {"users": ["alice"]}}

a_person_approves(inp) if {
	some r in guardrails.require_approval with input as inp
	r.group == "iam-admins"
	contains(r.reason, "outside business hours")
}

test_in_business_hours_the_level_decides if {
	every t in ["2026-11-23T08:00:00Z", "2026-11-23T12:30:00Z", "2026-11-23T17:59:59.999Z"] {
		not a_person_approves(object.union(disable, {"time": at(t)}))
	}
}

test_outside_business_hours_a_person_approves if {
	every t in ["2026-11-23T07:59:59Z", "2026-11-23T18:00:00Z", "2026-11-22T02:00:00Z"] {
		a_person_approves(object.union(disable, {"time": at(t)}))
	}
}

test_the_hour_is_utc_whatever_the_offset if {
	a_person_approves(object.union(disable, {"time": at("2026-11-23T09:00:00+02:00")})) # 07:00 UTC
}

test_a_missing_time_needs_a_person if {
	a_person_approves(disable)
}

test_other_identity_actions_are_not_affected if {
	enable := object.union(disable, {"action": {"name": "identity.enable_user"}, "time": at("2026-11-23T02:00:00Z")})
	not a_person_approves(enable)
}
