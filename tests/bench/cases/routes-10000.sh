# No plugins, 10,000 prefix routes (nginx: 10,000 locations); the request hits the middle one.
ROUTES=10000
