"""Policy-guarded autonomy controller for security incident response."""
