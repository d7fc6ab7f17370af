"""What auditors and leads ask of past and hypothetical decisions: reports, trails, scorecards, promotion,
what-if replay, attacker pages."""
