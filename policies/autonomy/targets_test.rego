package autonomy.targets_test

import data.autonomy.targets

v4 := {"value": "198.51.100.66", "version": 4, "prefix_len": 32, "bits": "11000110001100110110010001000010", "num_addresses": 1}

v6_range := {"value": "2001:db8::/32", "version": 6, "prefix_len": 32, "bits": "00100000000000010000110110111000"}

everything := {"value": "0.0.0.0/0", "version": 4, "prefix_len": 0, "bits": ""}

test_well_formed_targets_are_kept_in_order if {
	targets.ips == [v4, v6_range, everything, v4] with input as {"targets": {"ips": [v4, v6_range, everything, v4]}}
}

test_malformed_targets_are_dropped if {
	bad := [
		object.union(v4, {"value": 5}), # value not a string
		object.union(v4, {"bits": 1}), # bits not a string
		object.union(v4, {"bits": "1100"}), # bits shorter than prefix_len
		object.union(v4, {"prefix_len": 31.5}), # not a whole number
		object.union(v4, {"prefix_len": "32"}), # not a number
		object.union(v4, {"version": 5}), # no such IP version
		object.union(v4, {"prefix_len": 33, "bits": "110001100011001101100100010000100"}), # too long for IPv4
		object.union(v4, {"bits": "1100011000110011011001000100001x"}), # not binary
		json.remove(v4, ["version"]),
	]
	targets.ips == [v4] with input as {"targets": {"ips": array.concat(bad, [v4])}}
}

test_all_well_formed_only_when_every_target_is if {
	targets.all_well_formed with input as {"targets": {"ips": [v4, v6_range, everything]}}
	targets.all_well_formed with input as {"targets": {"ips": []}}
	not targets.all_well_formed with input as {"targets": {"ips": [v4, object.union(v4, {"bits": "1"})]}}
	not targets.all_well_formed with input as {"targets": {"ips": {"0": v4}}}
	not targets.all_well_formed with input as {"targets": {}}
}

test_no_list_when_ips_is_not_an_array if {
	not targets.ips with input as {"targets": {"ips": {"0": v4}}}
	not targets.ips with input as {"targets": {}}
}

six_to_four := {"value": "2002:c633:6442::", "version": 6, "prefix_len": 128, "bits": "00100000000000101100011000110011011001000100001000000000000000000000000000000000000000000000000000000000000000000000000000000000", "embedded": ["11000110001100110110010001000010"], "num_addresses": 1}

test_embedded_is_a_list_of_ipv4_prefix_bits_when_present if {
	bad := [
		object.union(six_to_four, {"embedded": "11000110"}), # not a list
		object.union(six_to_four, {"embedded": [11000110]}), # not a string
		object.union(six_to_four, {"embedded": ["110001100011001101100100010000100"]}), # longer than IPv4
		object.union(six_to_four, {"embedded": ["1100011x"]}), # not binary
	]
	targets.ips == [six_to_four, v4] with input as {"targets": {"ips": array.concat(bad, [six_to_four, v4])}}
	targets.all_well_formed with input as {"targets": {"ips": [six_to_four, object.union(v4, {"embedded": []})]}}
}
